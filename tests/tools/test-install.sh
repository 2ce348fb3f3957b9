#!/bin/sh
# test-install.sh: `meson install` into a temporary DESTDIR, then the
# installed command, a C program built with pkg-config, Python (with the
# installed override and its C half) and GJS, each with only the
# installed tree on its paths: no build or source directory.
#
# Usage: test-install.sh BUILD_DIR
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -u

build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/dest
n=0
failed=0

ok () {
  n=$((n + 1))
  if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi
}

# (it builds what the tests did not need: the reference, the vapi…)
meson install -C "$build" --destdir "$dest" > "$work/install.log" 2>&1
status=$?
[ $status -eq 0 ] || tail -20 "$work/install.log" | sed 's/^/# /'
ok $status "meson install --destdir"

prefix=$(meson introspect "$build" --buildoptions | /usr/bin/python3 -c '
import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
libdir=$(meson introspect "$build" --buildoptions | /usr/bin/python3 -c '
import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
root=$dest$prefix
lib=$root/$libdir

# nothing of the build tree: a clean environment
clean_env () {
  env -i PATH=/usr/bin:/bin HOME="$work" LANG=C.UTF-8 "$@"
}

# the command runs by its rpath alone
clean_env "$root/bin/liteyuki-comm" --version | grep -q "^liteyuki-comm "
ok $? "the installed command runs without LD_LIBRARY_PATH"
cat > "$work/hub.conf" <<CONF
[target a]
Exec=/bin/true
CONF
clean_env "$root/bin/liteyuki-comm" run --check "$work/hub.conf"
ok $? "the installed command checks a configuration"
clean_env ldd "$root/bin/liteyuki-comm" | grep -q "libliteyuki-comm-1.so.0 => $root/"
ok $? "it links the installed library"

# a C program, built with pkg-config against the installed files
cat > "$work/program.c" <<'C'
#include <liteyuki-comm.h>

int
main (void)
{
  g_autoptr(LyChannel) a = NULL, b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) message = NULL;

  if (!ly_channel_new_pair ("install", &a, &b, &error) ||
      !ly_channel_send (a, g_variant_new_string ("installed"), &error) ||
      (message = ly_channel_receive (b, NULL, &error)) == NULL)
    g_error ("%s", error->message);
  g_print ("%s %s\n", g_variant_get_string (message, NULL), ly_storage_is_proxy (ly_storage_get_default ()) ? "proxy" : "hub");
  return 0;
}
C
# the .pc names the real prefix: a copy names the DESTDIR one
mkdir -p "$work/pkgconfig"
sed "s|^prefix=.*|prefix=$root|" "$lib/pkgconfig/liteyuki-comm-1.pc" > "$work/pkgconfig/liteyuki-comm-1.pc"
flags=$(PKG_CONFIG_PATH="$work/pkgconfig" pkg-config --cflags --libs liteyuki-comm-1)
ok $? "pkg-config finds liteyuki-comm-1"
cc -o "$work/program" "$work/program.c" $flags -Wl,-rpath,"$lib" 2> "$work/cc.log"
ok $? "a C program builds with pkg-config's flags"
clean_env "$work/program" | grep -q "^installed hub$"
ok $? "the C program runs"

# Python and GJS: the typelib, the override, the library
python_dir=$(cd "$root" && ls -d lib/python3*/*-packages 2>/dev/null | head -1)
clean_env PYTHONPATH="$root/$python_dir" GI_TYPELIB_PATH="$lib/girepository-1.0" LD_LIBRARY_PATH="$lib" \
  /usr/bin/python3 -c '
import gi
gi.require_version("Ly", "1")
from gi.repository import Ly
import gi.overrides.Ly as override, gi.overrides._Ly as extension
import sys
a, b = Ly.Channel.new_pair("py")
a.send({"n": 1, "tags": ["x"]})
assert b.receive() == {"n": 1, "tags": ["x"]}
for module in (override, extension):
    assert module.__file__.startswith(sys.argv[1]), module.__file__
print("python ok")
' "$root" | grep -q "python ok"
ok $? "Python uses the installed override and its C half"

cat > "$work/test.js" <<'JS'
import GLib from 'gi://GLib';
import Ly from 'gi://Ly?version=1';
const [, a, b] = Ly.Channel.new_pair('gjs');
a.send(new GLib.Variant('s', 'gjs ok'));
print(b.receive(null).get_string()[0]);
JS
clean_env GI_TYPELIB_PATH="$lib/girepository-1.0" LD_LIBRARY_PATH="$lib" gjs -m "$work/test.js" | grep -q "gjs ok"
ok $? "GJS uses the installed typelib"

[ -f "$root/share/man/man1/liteyuki-comm.1" ] && [ -f "$root/share/man/man5/liteyuki-comm.conf.5" ]
ok $? "the manual pages are installed"

echo "1..$n"
exit $failed
