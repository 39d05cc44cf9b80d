"""``python -m training``: the training command group."""

from training.cli import train_cli

if __name__ == "__main__":
    train_cli()
