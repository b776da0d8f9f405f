"""The suite cannot be fooled by the caller's shell: after `source var/openrc` (OS_*), an
OS_CLOUD selection or an AWS profile (AWS_*), the tests still talk to the clouds they start.

Each test runs pytest in a subprocess whose environment carries such variables, all pointing
nowhere, on tests that drive the real openstack CLI and boto3."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there
CALLER_SHELL = {  # what `source var/openrc` of another cluster plus an AWS profile leave behind
    "OS_AUTH_URL": f"{NOWHERE}/identity/v3", "OS_USERNAME": "someone", "OS_PASSWORD": "wrong",
    "OS_PROJECT_NAME": "elsewhere", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
    "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": "Nowhere", "OS_AUTH_TYPE": "password", "OS_CLOUD": "nowhere",
    "OS_INTERFACE": "internal", "AWS_PROFILE": "nowhere", "AWS_ACCESS_KEY_ID": "AKIDNOWHERE",
    "AWS_SECRET_ACCESS_KEY": "wrong", "AWS_DEFAULT_REGION": "nowhere-1", "AWS_ENDPOINT_URL": NOWHERE,
}
EC2_TEST = "tests/unit/test_api_ec2.py::test_images_zones_keypairs"
CLI_TEST = "tests/unit/test_api_cli.py::test_openstack_cli_boot_list_show_delete"

pytestmark = pytest.mark.slow


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **CALLER_SHELL)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=280, check=False)


@pytest.mark.timeout(600)
def test_cli_and_boto3_tests_pass_with_a_foreign_cloud_in_the_callers_environment() -> None:
    """The openstack CLI test and a boto3 test pass although every OS_* / AWS_* variable names
    another cloud: neither they nor the CLI processes they start see them."""
    done = _pytest(CLI_TEST, EC2_TEST)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout, done.stdout[-2000:]


def test_those_variables_break_a_test_that_is_not_scrubbed() -> None:
    """The control: without tests/conftest.py (whose session fixture removes them), the same boto3
    test errors on AWS_PROFILE, so the first test proves the scrubbing, not harmless variables."""
    done = _pytest("--noconftest", EC2_TEST)
    assert done.returncode != 0
    assert "ProfileNotFound" in done.stdout + done.stderr, done.stdout[-3000:]
