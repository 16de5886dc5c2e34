"""pytest plugin: moto's EC2 server on 127.0.0.1 for the ``aws`` resource.

This is the ONLY mock of the test suite: AWS cannot be reached from CI, so EC2's API is
served by moto (in server mode, over real HTTP on loopback) while the "instances" are reached
through the local sshd of :mod:`fixtures_ssh` (``resource_args.hosts`` maps each instance id to
a loopback sshd port).

Use with ``pytest_plugins = ["fixtures_ssh", "fixtures_aws"]`` in a test module.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}


@dataclass
class MotoEC2:
    """The moto server and helpers to make instances.

    Attributes:
        url: the endpoint URL.
        env: fake credentials to put in the experiment's environment.
    """

    url: str
    env: dict[str, str]
    _image: str | None = None

    def client(self):
        import boto3

        return boto3.client("ec2", region_name="us-east-1", endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def instances(self, servers, stopped: int = 1) -> list[str]:
        """One instance per sshd node; the first ``stopped`` ones are stopped (Auptimizer must
        start them)."""
        ec2 = self.client()
        if self._image is None:  # listing moto's images is slow: once per session
            self._image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        image = self._image
        resp = ec2.run_instances(ImageId=image, MinCount=len(servers.ports),
                                 MaxCount=len(servers.ports), InstanceType="t3.micro")
        ids = [i["InstanceId"] for i in resp["Instances"]]
        if stopped:
            ec2.stop_instances(InstanceIds=ids[:stopped])
        return ids

    def state(self, iid: str) -> str:
        resp = self.client().describe_instances(InstanceIds=[iid])
        return resp["Reservations"][0]["Instances"][0]["State"]["Name"]

    def resource_args(self, servers, ids: list[str], **extra) -> dict:
        """resource_args of ``aws`` on these instances, each mapped to one local sshd."""
        args = servers.node_args(**extra)
        args.pop("nodes")
        args.update({
            "instances": [f"{servers.user}@{i} {servers.key}" for i in ids],
            "hosts": {i: f"127.0.0.1:{p}" for i, p in zip(ids, servers.ports, strict=True)},
            "endpoint_url": self.url, "region": "us-east-1", "connection_retry": 2,
        })
        return args


@pytest.fixture(scope="session")
def moto_ec2() -> MotoEC2:
    """moto's server on a free loopback port, stopped after the session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("moto[server] missing under CI (pip install -e '.[test]')")
        pytest.skip("moto[server] is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(CREDENTIALS)  # for the helper clients; the experiment gets env too
    try:
        yield MotoEC2(f"http://127.0.0.1:{port}", dict(CREDENTIALS))
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
