# Bash completion for cortex, cortex-budget, cortex-task, cortex-spawn and cortex-reap.
#
#   source bin/cortex-completion.bash         # this shell; or put the line in ~/.bashrc
#   bin/install                               # also installs it for bash-completion under $PREFIX/share
#
# Subcommands and flags come from the tools' own --help, which is generated from the same
# declarations the parser reads: the completion cannot drift from the real flags (and
# Tests/CortexToolsTests/CompletionTests.swift checks every flag of every --help is offered).
# The tools start in about a millisecond, so asking them on each TAB costs nothing noticeable.

# The command words in the COMMANDS section of "$@ --help".
_cortex_commands() {
  "$@" --help 2>/dev/null | awk '/^COMMANDS:/ { on = 1; next } on && /^$/ { exit } on && NF { print $1 }'
}

# The long options in the OPTIONS section of "$@ --help"; with "values", only those taking a value.
_cortex_flags() {
  local which=$1
  shift
  "$@" --help 2>/dev/null | awk -v which="$which" '
    /^OPTIONS:/ { on = 1; next }
    on && /^$/ { exit }
    on && match($0, /--[a-z][a-z0-9-]*( <)?/) {
      flag = substr($0, RSTART, RLENGTH)
      takes = (flag ~ / <$/)
      sub(/ <$/, "", flag)
      if (which != "values" || takes) print flag
    }'
}

_cortex_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local -a path=("${COMP_WORDS[0]}")
  local i word values
  COMPREPLY=()
  # Walk the words before the cursor: command words deepen the path, options (and their
  # values) are skipped, and after "--" comes the worker's command line (cortex-spawn).
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    if [[ $word == -- ]]; then
      COMPREPLY=($(compgen -c -- "$cur"))
      [[ $i -lt $((COMP_CWORD - 1)) ]] && COMPREPLY=($(compgen -f -- "$cur"))
      return
    elif [[ $word == --* ]]; then
      values=" $(_cortex_flags values "${path[@]}" | tr '\n' ' ') "
      [[ $values == *" $word "* ]] && ((i++))
    elif [[ " $(_cortex_commands "${path[@]}" | tr '\n' ' ') " == *" $word "* ]]; then
      path+=("$word")
    fi
  done
  # A value for the option before the cursor.
  values=" $(_cortex_flags values "${path[@]}" | tr '\n' ' ') "
  if [[ $prev == --* && $values == *" $prev "* ]]; then
    case $prev in
      --dir) COMPREPLY=($(compgen -d -- "$cur")) ;;
      --out | --*-file) COMPREPLY=($(compgen -f -- "$cur")) ;;
      --priority) COMPREPLY=($(compgen -W "critical high medium low" -- "$cur")) ;;
      --status) COMPREPLY=($(compgen -W "pending running done failed dead cancelled" -- "$cur")) ;;
      --restart) COMPREPLY=($(compgen -W "never on-failure always" -- "$cur")) ;;
    esac
    return
  fi
  # A pool's or a worker's name where one goes: asked of the folder (--dir or $CORTEX_DIR).
  if [[ $cur != -* && ${path[*]:1} =~ ^(pool (stop|scale)|worker (show|logs|stop))$ ]]; then
    local dir=() noun=${path[1]}
    for ((i = 1; i < COMP_CWORD; i++)); do [[ ${COMP_WORDS[i]} == --dir ]] && dir=(--dir "${COMP_WORDS[i + 1]}"); done
    COMPREPLY=($(compgen -W "$("${path[0]}" "$noun" list "${dir[@]}" 2>/dev/null | awk -v noun="$noun" \
      'noun == "pool" && $0 != "no pools" { print $1 } noun == "worker" && NR > 1 { print $1 }')" -- "$cur"))
    return
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_cortex_flags all "${path[@]}") --" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_cortex_commands "${path[@]}")" -- "$cur"))
  fi
}

complete -F _cortex_complete cortex cortex-budget cortex-task cortex-spawn cortex-reap
