#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mitogen_wire_fuzz::reply_body(data);
});
