"""Where cargo puts the `terrarium` binary the benchmarks run: the workspace builds for its host
by name (`.cargo/config.toml`, static on Linux), so a build is in target/HOST/PROFILE/."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def built_binary(profile="release"):
    """target/HOST/PROFILE/terrarium, HOST being `rustc --print host-tuple`."""
    host = subprocess.run(["rustc", "--print", "host-tuple"], capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(ROOT, "target", host, profile, "terrarium")
