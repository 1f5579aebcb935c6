import pytest

from match_helpers import make_host


@pytest.fixture
def host():
    return make_host()
