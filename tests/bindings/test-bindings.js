// test-bindings.js: the channel API from GJS through GObject-introspection
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Ly from 'gi://Ly?version=1';
import System from 'system';

// GJS 1.74 keeps the skipped boolean of new_pair(): [ok, first, second].
Gio._promisify(Ly.Channel.prototype, 'receive_async', 'receive_finish');

function assertEqual(actual, expected, what) {
    const a = JSON.stringify(actual), e = JSON.stringify(expected);
    if (a !== e)
        throw new Error(`${what}: expected ${e}, got ${a}`);
}

function runUntil(predicate, seconds = 10) {
    const context = GLib.MainContext.default();
    const deadline = GLib.get_monotonic_time() + seconds * 1000000;
    while (!predicate()) {
        if (GLib.get_monotonic_time() > deadline)
            throw new Error('timed out waiting for the test condition');
        context.iteration(true);
    }
}

const tests = {
    'pair, values both ways': () => {
        const [, a, b] = Ly.Channel.new_pair('gjs');
        const values = [
            new GLib.Variant('s', 'hello'),
            new GLib.Variant('i', 42),
            new GLib.Variant('a{sv}', {k: new GLib.Variant('s', 'v'), n: new GLib.Variant('u', 7)}),
            new GLib.Variant('as', []),
        ];
        for (const v of values) {
            a.send(v);
            b.send(v);
        }
        for (const v of values) {
            assertEqual(b.receive(null).recursiveUnpack(), v.recursiveUnpack(), 'a to b');
            assertEqual(a.receive(null).recursiveUnpack(), v.recursiveUnpack(), 'b to a');
        }
        assertEqual(b.mode, Ly.ChannelMode.ACTIVE, 'mode');
    },

    'received signal with a detail': () => {
        const [, a, b] = Ly.Channel.new_pair('gjs');
        const strings = [], all = [];
        b.connect('received::s', (ch, m) => strings.push(m.unpack()));
        b.connect('received', (ch, m) => all.push(m.recursiveUnpack()));
        a.send(new GLib.Variant('s', 'one'));
        a.send(new GLib.Variant('i', 2));
        a.send(new GLib.Variant('s', 'three'));
        runUntil(() => all.length === 3);
        assertEqual(strings, ['one', 'three'], 'strings');
        assertEqual(all, ['one', 2, 'three'], 'all');
    },

    'errors are GErrors': () => {
        const [, a] = Ly.Channel.new_pair('gjs');
        a.set_message_type(new GLib.VariantType('s'));
        let caught = null;
        try {
            a.send(new GLib.Variant('i', 1));
        } catch (e) {
            caught = e;
        }
        if (!caught || !caught.matches(Ly.channel_error_quark(), Ly.ChannelError.TYPE_MISMATCH))
            throw new Error(`expected TYPE_MISMATCH, got ${caught}`);
    },
};

async function receiveAsync() {
    const [, a, b] = Ly.Channel.new_pair('gjs');
    a.send(new GLib.Variant('s', 'first'));
    GLib.timeout_add(GLib.PRIORITY_DEFAULT, 10, () => {
        a.send(new GLib.Variant('a{sv}', {x: new GLib.Variant('d', 1.5)}));
        return GLib.SOURCE_REMOVE;
    });
    const first = await b.receive_async(null);
    const second = await b.receive_async(null);
    assertEqual(first.unpack(), 'first', 'first');
    assertEqual(second.recursiveUnpack(), {x: 1.5}, 'second');
}

const names = Object.keys(tests);
print(`1..${names.length + 1}`);
let failed = 0;
names.forEach((name, i) => {
    try {
        tests[name]();
        print(`ok ${i + 1} - ${name}`);
    } catch (e) {
        failed++;
        print(`not ok ${i + 1} - ${name}`);
        print(`# ${e}\n# ${e.stack}`.replace(/\n/g, '\n# '));
    }
});

const loop = new GLib.MainLoop(null, false);
receiveAsync().then(() => {
    print(`ok ${names.length + 1} - receive_async with await`);
}).catch(e => {
    failed++;
    print(`not ok ${names.length + 1} - receive_async with await`);
    print(`# ${e}`);
}).finally(() => loop.quit());
GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 10, () => {
    loop.quit();
    return GLib.SOURCE_REMOVE;
});
loop.run();
System.exit(failed ? 1 : 0);
