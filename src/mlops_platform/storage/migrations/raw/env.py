from mlops_platform.storage.migrations.env import run

run()
