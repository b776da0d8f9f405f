"""`cellctl completion`: the bash script completes commands, subcommands, options and, where a command
takes its FILE, file names, run by bash itself."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def complete(tmp_path: Path, *words: str) -> list[str]:
    """COMPREPLY for `cellctl WORDS` with the cursor on the last word, in a bash that sourced the script."""
    script = subprocess.run([sys.executable, "-m", "tools.cellctl", "completion"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    quoted = " ".join(f"'{w}'" for w in ("cellctl", *words))
    probe = f'{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _cellctl; printf "%s\\n" "${{COMPREPLY[@]}}"'
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin"}, check=True)
    return sorted(line for line in done.stdout.splitlines() if line)


def test_commands_subcommands_options_and_files(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text("cluster: x\n")
    assert complete(tmp_path, "st") == ["status"]
    assert complete(tmp_path, "db", "") == ["--help", "-h", "status", "upgrade"]
    assert complete(tmp_path, "db", "status", "--j") == ["--json"]
    assert complete(tmp_path, "up", "--ti") == ["--timeout"]
    assert complete(tmp_path, "up", "clu") == ["cluster.yaml"]  # up takes the cluster file
    assert complete(tmp_path, "host", "clu") == []  # host wants down or up first
    assert complete(tmp_path, "--ver") == ["--version"]
