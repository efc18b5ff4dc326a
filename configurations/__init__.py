from configurations.config import ConfigFactory, WorkerConfig, HostConfig, load_dotenv_once

__all__ = ["ConfigFactory", "WorkerConfig", "HostConfig", "load_dotenv_once"]
