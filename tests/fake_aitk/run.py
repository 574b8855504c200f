"""A fake AI-Toolkit `run.py`: same command line, same output bytes, same files, no torch and no model.

Run it exactly like the real one: `python run.py /abs/config.yaml` with cwd = this folder, PYTHONUNBUFFERED=1 and
stderr merged into stdout. It prints AI-Toolkit's real lines (start banner, process config as JSON, model loading,
dataset, caching bar, samples), the training bar on stderr as tqdm writes it to a pipe (carriage-return repaints,
postfix `lr: 1.0e-04 loss: 4.123e-01`), and writes the real output layout: `<training_folder>/<name>/config.yaml`,
`<name>_<9-digit step>.safetensors` trimmed to max_step_saves_to_keep, the final `<name>.safetensors` (real
safetensors with `training_info` metadata), `optimizer.pt` and `samples/<epoch ms>__<9-digit step>_<i>.jpg`.
Re-running a job resumes from its newest checkpoint. SIGINT prints `Job stopped` and exits 0 without saving;
SIGTERM kills it (143). Output is the same for the same config and SEED.

Environment knobs:
  FAKE_AITK_STEP_DELAY   seconds per training step (default 0.02); also sets the printed rate
  FAKE_AITK_FAIL         oom_load | oom_steps | model_not_found | gated | missing_dep | config | disk_full | crash
                         | hang
  FAKE_AITK_FAIL_AT_STEP step at which oom_steps, disk_full, crash and hang strike (default: half the steps)
  FAKE_AITK_PRINT_ENV    print the whole environment after the process config (to test what reaches a trainer)
  SEED                   makes losses, weights and sample images reproducible (default 0)

Like AI-Toolkit's loader it replaces ${VAR} from the environment over the config's text before parsing, then
[name]; the process-level `name` overrides config.name; the output folder is os.path.join(training_folder, name).
"""

from __future__ import annotations

import argparse
import os
import sys

if os.environ.get("FAKE_AITK_FAIL") == "missing_dep":
    # AI-Toolkit imports torchaudio at start-up without declaring it (ai-toolkit issues #415, #436)
    raise ModuleNotFoundError("No module named 'torchaudio'", name="torchaudio")

from fake_trainer import FakeTrainer, load_job

ON_ERROR_UNBOUND = "Error running on_error: cannot access local variable 'job' where it is not associated with a value"


def print_end_message(jobs_completed: int, jobs_failed: int) -> None:
    """AI-Toolkit's `Result:` block."""
    print("")
    print("========================================")
    print("Result:")
    print(f" - {jobs_completed} completed job{'' if jobs_completed == 1 else 's'}")
    if jobs_failed:
        print(f" - {jobs_failed} failure{'' if jobs_failed == 1 else 's'}")
    print("========================================")


def main() -> None:
    """Parse the command line like AI-Toolkit, run the one job, report like AI-Toolkit."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config_file_list", nargs="+", type=str)
    parser.add_argument("-r", "--recover", action="store_true")
    parser.add_argument("-n", "--name", type=str, default=None)
    parser.add_argument("-l", "--log", type=str, default=None)
    args = parser.parse_args()
    print(f"Running {len(args.config_file_list)} job{'' if len(args.config_file_list) == 1 else 's'}")
    for config_file in args.config_file_list:
        job: FakeTrainer | None = None
        try:
            job = load_job(config_file, args.name)
            job.run()
        except Exception as e:
            print(f"Error running job: {e}")
            if job is None:
                # AI-Toolkit's handler calls job.process[0].on_error() and trips over the unbound name
                print(ON_ERROR_UNBOUND)
            if not args.recover:
                print_end_message(0, 1)
                raise e
        except KeyboardInterrupt:
            if not args.recover:
                print("")
                print("========================================")
                print("Job stopped")
                print("========================================")
                sys.exit(0)  # the training bar, left open, repaints once more as the interpreter exits


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # keeps order even without -u
    main()
