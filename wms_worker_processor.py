"""The volunteer's one command: python wms_worker_processor.py --repo-url URL"""
from coordination.cli import build_worker_cli
from pipelines import default_registry

cli = build_worker_cli(default_registry)

if __name__ == "__main__":
    cli(prog_name="wms_worker_processor.py")
