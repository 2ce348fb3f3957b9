# complete.bash COMPLETION-FILE WORD…: what bash completes for the last
# WORD of the command line WORD…, one candidate a line, sorted.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

source "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_liteyuki_comm
((${#COMPREPLY[@]} == 0)) || printf "%s\n" "${COMPREPLY[@]}" | sort
