"""The volunteer's one command: python wms_worker_processor.py --repo-url URL

Also the seed manual's Python API: DistributedWorker, GitHubWorkBridge, SleepPreventer.
"""
from configurations import ConfigFactory, worker_config
from coordination import api
from coordination.cli import build_worker_cli
from pipelines import default_registry

GitHubWorkBridge = api.GitHubWorkBridge
SleepPreventer = api.SleepPreventer


class DistributedWorker(api.DistributedWorker):
    """The worker with this project's order kinds (simulate, ocr_chapter)."""

    def default_registry(self):
        return default_registry()

    def configure(self, environment, **overrides):
        return ConfigFactory.worker(environment, **overrides)


cli = build_worker_cli(default_registry, worker_config)

if __name__ == "__main__":
    cli(prog_name="wms_worker_processor.py")
