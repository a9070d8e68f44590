//! XML <-> JSON body conversion (`filter::xml`) on arbitrary bytes: reading XML never
//! panics, and whatever JSON it gives that can be written back as XML is written as
//! XML that reads again (the writer never makes a document its own reader refuses).
#![no_main]

use gatehouse_core::filter::{json_to_xml, xml_to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = xml_to_json(text) else {
        return;
    };
    if let Ok(xml) = json_to_xml(&doc, "root") {
        if let Err(e) = xml_to_json(&xml) {
            panic!("wrote XML it cannot read back: {e}\n{xml}");
        }
    }
});
