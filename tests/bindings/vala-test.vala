/* vala-test.vala: a hub and its child in Vala, through liteyuki-comm-1.vapi:
 * a channel pair (with a handler on closed), the storage and its changed
 * signal, and a child process started by a ProcessManager that answers
 * on its channel and in the storage.  TAP output; exit status 1 on a
 * failure.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

int tests_run = 0;
bool failed = false;

void check (bool ok, string what) {
    tests_run++;
    print ("%s %d - %s\n", ok ? "ok" : "not ok", tests_run, what);
    if (!ok)
        failed = true;
}

void iterate_until (owned SourceFunc done, int seconds = 10) {
    var until = GLib.get_monotonic_time () + seconds * 1000000;
    while (!done () && GLib.get_monotonic_time () < until)
        MainContext.default ().iteration (true);
}

int run_child () {
    var active = Ly.active_channel ();
    try {
        var message = active.receive (null);
        Ly.Storage.get_default ().set ("vala.child", message);
        active.send (new Variant.string ("pong from vala"));
        active.flush (null);
    } catch (Error e) {
        printerr ("child: %s\n", e.message);
        return 1;
    }
    return 0;
}

void test_channel_pair () throws Error {
    Ly.Channel a, b;
    Ly.Channel.new_pair ("vala", out a, out b);

    string? received = null;
    b.received.connect ((channel, message) => { received = message.get_string (); });
    a.send (new Variant.string ("hello"));
    iterate_until (() => received != null);
    check (received == "hello", "passive receive in Vala");

    bool closed_seen = false;
    Error? closed_error = new IOError.FAILED ("not yet");
    a.on_closed.connect ((channel, error) => { closed_seen = true; closed_error = error; });
    b.close ();
    iterate_until (() => closed_seen);
    check (closed_seen && closed_error == null, "the closed signal (on_closed in Vala), clean");
    check (a.closed, "the closed property keeps its name");
}

void test_storage () throws Error {
    var storage = new Ly.Storage ();
    int changes = 0;
    storage.changed["greeting"].connect ((s, key, value) => { changes++; });
    storage.set ("greeting", new Variant.string ("hello"));
    storage.set ("greeting", new Variant.string ("hello"));
    var value = storage.get ("greeting");
    check (value != null && value.get_string () == "hello", "storage set and get");
    check (changes == 1, "changed once per real change");
    check (!storage.contains ("nothing"), "contains");
}

void test_hub_and_child (string self_path) throws Error {
    var manager = new Ly.ProcessManager ();
    manager.add_target ("valachild", { self_path, "child" });
    var storage = Ly.Storage.get_default ();
    Variant? stored = null;
    storage.changed["vala.child"].connect ((s, key, value) => { stored = value; });

    manager.start ("valachild");
    var active = Ly.get_channel ("valachild-active");
    active.send (new Variant.string ("ping from the hub"));
    var reply = active.receive_timeout (10 * 1000, null);
    check (reply.get_string () == "pong from vala", "a child process answers on its channel");
    iterate_until (() => stored != null);
    check (stored != null && stored.get_string () == "ping from the hub", "the child's set reached the hub");
    manager.stop ("valachild", null);
    check (!manager.is_alive ("valachild"), "the child stopped");
}

int main (string[] args) {
    if (args.length > 1 && args[1] == "child")
        return run_child ();

    print ("1..9\n");
    try {
        test_channel_pair ();
        test_storage ();
        test_hub_and_child (args[0]);
    } catch (Error e) {
        print ("not ok - %s\n", e.message);
        return 1;
    }
    return failed ? 1 : 0;
}
