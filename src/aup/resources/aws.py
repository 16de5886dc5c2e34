"""``resource: aws``: EC2 instances used as SSH nodes (boto3 + the ``node`` machinery).

Entries are ``user@<instance id> [keyfile]``, in ``resource_args.instances`` or ``aws_mapping``
of ``.aup/env.ini``; one slot per entry. Before the first job,
:meth:`AWSResourceManager.prepare` looks every instance up (an unknown id is an error naming
it), starts the stopped ones, waits until all run, and connects to each over SSH (its public DNS
name, else its public, else its private IP; ``hosts`` maps an id to another ``host[:port]``,
e.g. an SSH port forward or a bastion's tunnel), retrying ``connection_retry`` times
``reconn_wait_time`` apart while the instance boots. From there on everything is the ``node``
resource: same uploads, remote ``workingdir``, live results, stop, retries. ``shutdown: true``
stops the instances at the end of the experiment.

AWS credentials and the region come from the usual boto3 sources (environment, ``~/.aws``,
instance profile); ``region`` and ``endpoint_url`` in ``resource_args`` override them.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, ClassVar

from pydantic import Field, field_validator

from aup.errors import Problem, install_hint
from aup.resources.ssh import HostSpec, Node, NodeOptions, SSHError, SSHResourceManager, parse_host

log = logging.getLogger(__name__)

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


class AWSOptions(NodeOptions):
    """``resource_args`` of ``aws`` (those of ``node`` too, except ``nodes``).

    Attributes:
        instances: ``user@<instance id> [keyfile]`` entries; None: ``aws_mapping`` of env.ini.
        region: AWS region (default: boto3's configuration).
        endpoint_url: EC2 endpoint (default: AWS's own).
        shutdown: stop the instances when the experiment ends.
        connection_retry: SSH connection attempts per instance while it boots.
        start_timeout: seconds to wait for the instances to run.
        hosts: instance id -> ``host[:port]`` to connect to instead of its public address.
    """

    instances: list[str] | None = None
    region: str | None = None
    endpoint_url: str | None = None
    shutdown: bool = False
    connection_retry: int = Field(default=10, ge=1)
    start_timeout: float = Field(default=600.0, gt=0)
    hosts: dict[str, str] = Field(default_factory=dict)

    @field_validator("instances")
    @classmethod
    def _ids(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError('give at least one entry, e.g. "instances": '
                                 '["ubuntu@i-0123456789abcdef0 ~/.ssh/aws.pem"]')
            for entry in v:
                spec = parse_host(entry)
                if not INSTANCE_ID.match(spec.host):
                    raise ValueError(f"{entry!r}: {spec.host!r} is not an EC2 instance id "
                                     "(i- followed by 8 or 17 hex digits)")
        return v


class AWSResourceManager(SSHResourceManager):
    """``resource: aws`` (see the module docstring)."""

    kind: ClassVar[str] = "aws"
    Options = AWSOptions
    env_key: ClassVar[str] = "aws"
    mapping_key: ClassVar[str] = "aws_mapping"
    args_key: ClassVar[str] = "instances"
    slot_source: ClassVar[str] = 'one per instance ("instances")'
    resume_args: ClassVar[tuple[str, ...]] = ("instances",)

    def __init__(self, config, events, env_file: Any = None):
        super().__init__(config, events, env_file)
        self._ec2: Any = None
        self._ids: list[str] = []

    @classmethod
    def check_config(cls, config) -> list[Problem]:
        """``nodes`` (the node resource's key, which aws inherits but does not read) is
        refused: it was ignored without a word (trial 57)."""
        nodes = getattr(config.resource_options, "nodes", None)
        if nodes is None:
            return []
        return [Problem("resource_args.nodes", "resource 'aws' does not read nodes (the node "
                        "resource's hosts)", nodes, 'give the EC2 instances as "instances": '
                        '["user@i-0123456789abcdef0 keyfile"], or use "resource": "node"')]

    def labelled_specs(self) -> list[tuple[str, HostSpec]]:
        out = []
        for e in self.entries():
            try:
                spec = parse_host(e)
            except ValueError as err:
                raise SSHError(f"aws: {err}") from None
            if not INSTANCE_ID.match(spec.host):
                raise SSHError(f"aws: {e!r}: {spec.host!r} is not an EC2 instance id")
            out.append((f"{spec.user}@{spec.host}", spec))
        return out

    def _client(self) -> Any:
        try:
            import boto3
        except ImportError:
            raise SSHError(f"resource 'aws' needs boto3: {install_hint('aws')}") from None
        if self._ec2 is None:
            self._ec2 = self._call("connect to EC2", boto3.client, "ec2",
                                   region_name=self.options.region,
                                   endpoint_url=self.options.endpoint_url)
        return self._ec2

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, a boto3 call; its errors become :class:`SSHError` naming
        ``what`` and the fix (a missing region, or an endpoint that answers with something
        else than EC2's XML, were tracebacks; trial 57).

        Raises:
            SSHError: the call failed.
        """
        from botocore.exceptions import BotoCoreError, ClientError, NoRegionError
        from botocore.parsers import ResponseParserError

        try:
            return fn(*args, **kwargs)
        except ClientError as err:
            msg = err.response.get("Error", {}).get("Message", str(err))
            raise SSHError(f"aws: cannot {what}: {msg}") from err
        except NoRegionError:
            raise SSHError('aws: no AWS region is set; give resource_args "region" (e.g. '
                           '"us-east-1"), or set AWS_DEFAULT_REGION or a region in '
                           "~/.aws/config") from None
        except (BotoCoreError, ResponseParserError) as err:
            text = " ".join(str(err).split())[:200]
            raise SSHError(f"aws: cannot {what} ({text}); check credentials, region and "
                           "endpoint_url") from None

    def _describe(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        from botocore.exceptions import ClientError

        ec2 = self._client()
        try:
            resp = self._call(f"describe instances {', '.join(ids)}", ec2.describe_instances,
                              InstanceIds=ids)
        except SSHError as err:
            cause = err.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get(
                    "Code", "").startswith("InvalidInstanceID"):
                msg = cause.response["Error"].get("Message", str(cause))
                raise SSHError(f"aws: unknown EC2 instance: {msg} (ids asked: {', '.join(ids)}, "
                               f"region {ec2.meta.region_name}); fix resource_args.instances or "
                               "the region") from None
            raise
        found = {}
        for r in resp.get("Reservations", []):
            for inst in r.get("Instances", []):
                found[inst["InstanceId"]] = inst
        missing = [i for i in ids if i not in found]
        if missing:
            raise SSHError(f"aws: unknown EC2 instance(s): {', '.join(missing)}")
        return found

    def check(self) -> None:
        if not self.labelled_specs():
            raise SSHError('resource "aws" has no instances: give resource_args "instances": '
                           '["user@i-0123456789abcdef0 keyfile"], or aws_mapping in .aup/env.ini')
        self.check_key_files()

    def unused_hosts(self) -> list[str]:
        """``hosts`` entries for ids that are not instances of this experiment (a typo there
        silently fell back to the instance's public address; trial 57)."""
        ids = {spec.host for _, spec in self.labelled_specs()}
        return [f"resource_args.hosts has an entry for {i!r}, which is not one of the "
                f"instances ({', '.join(sorted(ids))}); it is not used"
                for i in self.options.hosts if i not in ids]

    def prepare(self) -> None:
        self.check()
        for warning in self.unused_hosts():
            log.warning("aws: %s", warning)
        specs = self.labelled_specs()
        ids = list(dict.fromkeys(spec.host for _, spec in specs))
        self._ids = ids
        found = self._describe(ids)
        bad = [i for i, inst in found.items()
               if inst["State"]["Name"] in ("terminated", "shutting-down")]
        if bad:
            raise SSHError(f"aws: instance(s) {', '.join(bad)} are terminated")
        to_start = [i for i, inst in found.items() if inst["State"]["Name"] != "running"]
        ec2 = self._client()
        if to_start:
            stopping = [i for i in to_start if found[i]["State"]["Name"] == "stopping"]
            if stopping:
                self._call(f"wait for {', '.join(stopping)} to stop",
                           ec2.get_waiter("instance_stopped").wait, InstanceIds=stopping,
                           WaiterConfig={"Delay": 5, "MaxAttempts": 120})
            log.info("aws: starting %s", ", ".join(to_start))
            self._call(f"start {', '.join(to_start)}", ec2.start_instances,
                       InstanceIds=to_start)
        try:
            self._connect_all(specs)
        except SSHError:
            # Refused before any job: the instances this run started are stopped again (they
            # were left running, billed, even with shutdown: true; trial 57).
            if to_start:
                self._stop(to_start, "started for this run, which did not start")
            raise

    def _connect_all(self, specs: list[tuple[str, HostSpec]]) -> None:
        ids = self._ids
        self._wait_running(ids)
        found = self._describe(ids)
        for label, spec in specs:
            if label in self._nodes:
                continue
            inst = found[spec.host]
            where = self.options.hosts.get(spec.host) or inst.get("PublicDnsName") or \
                inst.get("PublicIpAddress") or inst.get("PrivateIpAddress")
            if not where:
                raise SSHError(f"aws: instance {spec.host} has no address to connect to; give "
                               f'resource_args "hosts": {{"{spec.host}": "host:port"}}')
            host, _, port = where.partition(":")
            addr = HostSpec(spec.user, host, int(port) if port else spec.port, spec.keyfile)
            self._nodes[label] = Node(label, addr, self.options)
        self.check_nodes(self._connect_booting)  # every instance's problems at once

    def _wait_running(self, ids: list[str]) -> None:
        end = time.monotonic() + self.options.start_timeout
        while True:
            states = {i: inst["State"]["Name"] for i, inst in self._describe(ids).items()}
            waiting = [i for i, st in states.items() if st != "running"]
            if not waiting:
                return
            if time.monotonic() > end:
                raise SSHError(f"aws: instance(s) {', '.join(waiting)} not running after "
                               f"{self.options.start_timeout}s (states: {states})")
            time.sleep(2.0)

    def _connect_booting(self, node: Node) -> None:
        last: SSHError | None = None
        for i in range(self.options.connection_retry):
            if i:
                time.sleep(self.options.reconn_wait_time)
            try:
                node.client(retry=False)
                return
            except SSHError as err:
                last = err
                if "authentication" in str(err) or "host key" in str(err):
                    break  # waiting does not fix a wrong key
        assert last is not None
        raise last

    def _stop(self, ids: list[str], why: str) -> None:
        """Stop the instances ``ids``, saying so; a failure is a warning (the run is over)."""
        try:
            self._call(f"stop {', '.join(ids)}", self._client().stop_instances, InstanceIds=ids)
            log.warning("aws: stopped %s (%s)", ", ".join(ids), why)
        except SSHError as err:
            log.warning("aws: %s; stop them yourself (they run, and are billed)", err)

    def close(self) -> None:
        super().close()
        if self.options.shutdown and self._ids:
            self._stop(self._ids, "resource_args shutdown: true")
