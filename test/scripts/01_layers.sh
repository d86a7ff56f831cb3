#!/usr/bin/env bash
# The source tree's layers depend on each other one way only:
#   dasa.c -> api/, runtime/ -> core/ -> storage/, ipc/ -> dasa.h, settings.c
# Checked twice: the "x/x.h" headers each layer includes, and the dasa_*
# symbols each layer's objects use (nm), which must be defined in the same
# layer or a lower one (api/ and runtime/ may not use each other).
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
src=$DASA_SUITE/../src

rank() {
  case $1 in
    base) echo 0 ;; storage|ipc) echo 1 ;; core) echo 2 ;; api|runtime) echo 3 ;; top) echo 4 ;;
  esac
}
layer_of() {  # layer of a source or object path under $src
  case ${1#$src/} in
    api/*) echo api ;; runtime/*) echo runtime ;; core/*) echo core ;;
    storage/*) echo storage ;; ipc/*) echo ipc ;; dasa.*) echo top ;; *) echo base ;;
  esac
}
may_use() {  # may_use FROM TO
  [ "$1" = "$2" ] && return 0
  [ "$(rank "$2")" -lt "$(rank "$1")" ]
}

bad_includes=""
for f in "$src"/*.c "$src"/*.h "$src"/*/*.c "$src"/*/*.h; do
  from=$(layer_of "$f")
  for h in $(grep -ho '#include "\(api\|runtime\|core\|storage\|ipc\)/[a-z_]*\.h"' "$f" | grep -o '"[a-z]*/' | tr -d '"/'); do
    [ "$h" = storage ] && ! grep -q "#include \"storage/storage.h\"" "$f" && continue
    may_use "$from" "$h" || bad_includes="$bad_includes ${f#$src/}->$h"
  done
done
is "${bad_includes:-none}" none "every file includes only its own layer's header or lower ones"

objects=$(ls "$src"/*.o "$src"/*/*.o 2>/dev/null | wc -l)
ok "the objects are there to inspect ($objects)" test "$objects" -gt 20
defined=$(mktemp)
for o in "$src"/*.o "$src"/*/*.o; do
  nm --defined-only "$o" | awk -v l="$(layer_of "$o")" '$2 ~ /[TDBR]/ && $3 ~ /^dasa_/ { print $3, l }'
done | sort -u >"$defined"
bad_uses=""
for o in "$src"/*.o "$src"/*/*.o; do
  from=$(layer_of "$o")
  for sym in $(nm --undefined-only "$o" | awk '$2 ~ /^dasa_/ { print $2 }'); do
    to=$(awk -v s="$sym" '$1 == s { print $2 }' "$defined")
    [ -z "$to" ] && { bad_uses="$bad_uses ${o#$src/}:$sym(undefined)"; continue; }
    may_use "$from" "$to" || bad_uses="$bad_uses ${o#$src/}:$sym->$to"
  done
done
rm -f "$defined"
is "${bad_uses:-none}" none "no layer calls into a higher one (or a sibling)"

writers=$(grep -ln "INSERT INTO dasa\.\|UPDATE dasa\.\|DELETE FROM dasa\." "$src"/*/*.c | grep -v "/core/" | tr '\n' ' ')
is "${writers:-none}" none "only the kernel (core/) writes dasa's tables"
promise_updates=$(grep -l "UPDATE dasa.promises" "$src"/*/*.c | sed "s|^$src/||" | tr '\n' ' ')
is "$promise_updates" "core/settle.c core/suspension.c " "two files update promise rows"
is "$(grep -o "UPDATE dasa.promises [A-Za-z ]*=" "$src"/core/suspension.c | sort -u)" "UPDATE dasa.promises SET awaited =" \
   "and only settle.c writes a promise's state (suspension.c marks promises awaited)"
done_testing
