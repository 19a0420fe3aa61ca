"""Stage demo_data: write the embedded demo domains (MNIST -> UCI digits) as ImageFolder trees."""

import logging

from adaptflow.core.params import load_params
from adaptflow.data.demo import write_demo
from adaptflow.entry.stage import run_entry_point


def main() -> None:
    params = load_params()
    counts = write_demo(params.demo)
    logging.getLogger("demo_data").info("wrote %s under %s", counts, params.demo.root)


if __name__ == "__main__":
    run_entry_point(main)
