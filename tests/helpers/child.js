// child.js: the reference document's child side, in GJS, for the process
// manager tests.  Lines go to the file named by LY_TEST_OUTPUT.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Ly from 'gi://Ly?version=1';

Gio._promisify(Ly.Channel.prototype, 'receive_async', 'receive_finish');

const output = Gio.File.new_for_path(GLib.getenv('LY_TEST_OUTPUT'));
function log(line) {
    const stream = output.append_to(Gio.FileCreateFlags.NONE, null);
    stream.write_all(new TextEncoder().encode(`${line}\n`), null);
    stream.close(null);
}

const passive = Ly.passive_channel();
const active = Ly.active_channel();
log(`hello from ${Ly.get_process_name()} pid ${new Gio.Credentials().get_unix_pid()}`);

passive.connect('received::s', (channel, data) => {
    log(`Passive receive: ${data.unpack()}`);
    channel.send(new GLib.Variant('s', `child passive got ${data.unpack()}`));
});

async function activeLoop() {
    for (;;) {
        let data;
        try {
            data = await active.receive_async(null);
        } catch (e) {
            return;
        }
        log(`Active receive: ${data.unpack()}`);
        active.send(new GLib.Variant('s', `child active got ${data.unpack()}`));
    }
}

activeLoop();
new GLib.MainLoop(null, false).run();
