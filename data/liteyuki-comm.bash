# bash completion for liteyuki-comm
#
# Target, channel and key names come from the running hub (the one the
# command line names with --address or --bus-name).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

# _liteyuki_comm_hub ARGS…: runs a client command against the hub of the
# command line being completed
_liteyuki_comm_hub ()
{
  local i hub=()

  for ((i = 2; i < ${#COMP_WORDS[@]} - 1; i++)); do
    case ${COMP_WORDS[i]} in
      --address=* | --bus-name=*) hub+=("${COMP_WORDS[i]}") ;;
      --address | --bus-name) hub+=("${COMP_WORDS[i]}=${COMP_WORDS[i + 1]}") ;;
    esac
  done
  "${COMP_WORDS[0]}" "$@" "${hub[@]}" 2>/dev/null
}

_liteyuki_comm_targets ()
{
  # skip the heading of ps
  _liteyuki_comm_hub ps | tail -n +2 | cut -d ' ' -f 1
}

# the keys that start with $cur, one a line from the hub, each quoted for
# the shell: a key with a space completes as one word
_liteyuki_comm_keys ()
{
  local key

  while IFS= read -r key; do
    [[ $key == "$cur"* ]] && COMPREPLY+=("$(printf '%q' "$key")")
  done < <(_liteyuki_comm_hub storage list)
}

_liteyuki_comm ()
{
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prev=${COMP_WORDS[COMP_CWORD - 1]}
  local command=${COMP_WORDS[1]}
  local client_options="--address --bus-name --json --start --help"
  local i words=() n_args=0

  COMPREPLY=()

  if ((COMP_CWORD == 1)); then
    COMPREPLY=($(compgen -W "run demo ps start stop restart storage publish subscribe send receive --help --version" -- "$cur"))
    return
  fi

  # the arguments before the cursor, without the options
  for ((i = 2; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --address | --bus-name | --storage-file | --interval | --rounds | --count | -i | -n) ((i++)) ;;
      -*) ;;
      *) words+=("${COMP_WORDS[i]}") ;;
    esac
  done
  n_args=${#words[@]}

  case $prev in
    --storage-file)
      COMPREPLY=($(compgen -f -- "$cur"))
      return ;;
    --address | --bus-name | --interval | --rounds | --count | -i | -n)
      return ;;
  esac

  if [[ $cur == -* ]]; then
    case $command in
      run) COMPREPLY=($(compgen -W "--bus-name --address --storage-file --verbose --check --help" -- "$cur")) ;;
      demo) COMPREPLY=($(compgen -W "--interval --rounds --help" -- "$cur")) ;;
      subscribe | receive) COMPREPLY=($(compgen -W "$client_options --count" -- "$cur")) ;;
      storage)
        if [[ ${words[0]} == watch ]]; then
          COMPREPLY=($(compgen -W "$client_options --count" -- "$cur"))
        else
          COMPREPLY=($(compgen -W "$client_options" -- "$cur"))
        fi ;;
      *) COMPREPLY=($(compgen -W "$client_options" -- "$cur")) ;;
    esac
    return
  fi

  case $command in
    run)
      ((n_args == 0)) && COMPREPLY=($(compgen -f -- "$cur")) ;;
    start | stop | restart)
      ((n_args == 0)) && COMPREPLY=($(compgen -W "$(_liteyuki_comm_targets)" -- "$cur")) ;;
    send | receive)
      if ((n_args == 0)); then
        local target channels=()
        for target in $(_liteyuki_comm_targets); do
          channels+=("$target-active" "$target-passive")
        done
        COMPREPLY=($(compgen -W "${channels[*]}" -- "$cur"))
      fi ;;
    storage)
      if ((n_args == 0)); then
        COMPREPLY=($(compgen -W "get set delete contains cas list watch" -- "$cur"))
      elif ((n_args == 1)); then
        case ${words[0]} in
          get | set | delete | contains | cas | watch)
            _liteyuki_comm_keys ;;
        esac
      fi ;;
  esac
}

complete -F _liteyuki_comm liteyuki-comm
