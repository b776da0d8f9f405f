"""`cellctl completion`: a bash completion script made from cellctl's own parser, so it can never
name a command or option the parser does not have. `eval "$(cellctl completion)"` in ~/.bashrc, or
`cellctl completion > /etc/bash_completion.d/cellctl`.

Commands and options complete at every level (`cellctl db <TAB>` -> status upgrade ...); where a
command takes its FILE, file names complete too. argparse has no public way to walk its tree: this
reads its actions the way its own help formatter does.
"""
from __future__ import annotations

import argparse


def command_words(parser: argparse.ArgumentParser, path: str = "") -> dict[str, tuple[list[str], bool]]:
    """command path ("", "db", "db status") -> (the words that may follow it, whether it takes a file)."""
    words: list[str] = []
    takes_file = False
    out: dict[str, tuple[list[str], bool]] = {}
    for action in parser._actions:  # private: see the module doc
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                out.update(command_words(sub, f"{path} {name}".strip()))
        elif action.option_strings:
            words.extend(action.option_strings)
        elif action.dest == "file":
            takes_file = True
    out[path] = (sorted(words), takes_file)
    return out


def bash_script(parser: argparse.ArgumentParser) -> str:
    tree = command_words(parser)
    paths = "|".join(f'"{p}"' for p in sorted(tree) if p)
    cases = "\n".join(f'    "{p}") words="{" ".join(w)}"; files={int(f)} ;;' for p, (w, f) in sorted(tree.items()))
    return f"""# bash completion for cellctl (made by `cellctl completion` from its parser)
_cellctl() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" next words="" files=0 i
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="${{path:+$path }}${{COMP_WORDS[i]}}"
    case "$next" in
      {paths}) path="$next" ;;
    esac
  done
  case "$path" in
{cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  if [[ $files == 1 && $cur != -* ]]; then
    COMPREPLY+=($(compgen -f -- "$cur"))
  fi
}}
complete -o filenames -F _cellctl cellctl
"""
