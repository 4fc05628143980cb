"""A stand-in for the virtual machines LocalStack pretends to run.

LocalStack records EC2 instances but boots nothing. This plays the part of each machine: it
watches LocalStack for running instances of a cluster, and for each one does what the boot
script (control_plane/providers/user_data.py) does on a real instance — takes the ``PADDLER_*``
settings from the instance's user data, adds the instance id, and starts ``paddler agent`` with
them in its environment, as systemd does from /etc/paddler/agent.env. Each machine has a disk of
its own for the model cache, and reaches S3 at LocalStack (where a real one has an instance
profile), so an ``s3://`` model is downloaded as on AWS. When the instance is terminated in
LocalStack, its agent gets SIGTERM, as a shut-down machine's would.
"""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path
from typing import Any

from control_plane.providers.ec2 import CLUSTER_TAG
from control_plane.providers.user_data import agent_environment
from tests.processes import ServerProcess

logger = logging.getLogger("tests.vm_standin")


class VMStandIn:
    def __init__(
        self,
        ec2: Any,
        cluster: str,
        directory: Path,
        *,
        agent_args: tuple[str, ...] = ("--context-size", "256", "--reconnect-max-delay", "1"),
        interval: float = 0.2,
    ) -> None:
        self.ec2 = ec2
        self.cluster = cluster
        self.directory = directory
        self.agent_args = agent_args
        self.interval = interval
        self.agents: dict[str, ServerProcess] = {}  # instance id -> its agent
        self.booted: list[str] = []  # every instance id an agent was started for
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vm-standin", daemon=True)

    def __enter__(self) -> VMStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for agent in self.agents.values():
            agent.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # keep watching: a test reads the log when it times out
                logger.exception("vm stand-in step failed")

    def step(self) -> None:
        running = self._running_instances()
        for instance_id in running - set(self.agents):
            self._boot(instance_id)
        for instance_id in set(self.agents) - running:
            logger.info("instance %s is gone: stopping its agent", instance_id)
            self.agents.pop(instance_id).stop()

    def _running_instances(self) -> set[str]:
        reservations = self.ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]
        return {i["InstanceId"] for r in reservations for i in r["Instances"]}

    def _boot(self, instance_id: str) -> None:
        attribute = self.ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="userData"
        )
        user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
        environment = {
            **agent_environment(user_data),
            "PADDLER_INSTANCE_ID": instance_id,
            "PADDLER_NAME": instance_id,
            "PADDLER_MODEL_CACHE": str(self.directory / f"vm-{instance_id}-cache"),
            "AWS_ENDPOINT_URL": self.ec2.meta.endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.ec2.meta.region_name,
        }
        agent = ServerProcess(
            ["agent", *self.agent_args], self.directory / f"vm-{instance_id}.log", environment
        )
        agent.start()
        logger.info(
            "instance %s booted: agent pid %s", instance_id, agent.process and agent.process.pid
        )
        self.agents[instance_id] = agent
        self.booted.append(instance_id)
