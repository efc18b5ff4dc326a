from configurations.config import ConfigFactory, HostConfig, WorkerConfig, load_dotenv_once, worker_config

__all__ = ["ConfigFactory", "WorkerConfig", "HostConfig", "load_dotenv_once", "worker_config"]
