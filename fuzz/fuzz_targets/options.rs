//! Both option parsers and the merge on arbitrary input: no panic, and the
//! invariants of design §2 hold whenever the input parses.
//!
//! The input is split at its first NUL byte: before it, the plugin level
//! (`-o` and `-c`); after it, the volume level (`o` and `c`). The same text
//! is read as a mount-option string and as a process-option list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netfs::options::{MountOptions, Placeholders, ProcessOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (plugin_text, volume_text) = text.split_once('\0').unwrap_or((text, ""));

    // Both parsers, on both texts, at both levels: errors are fine, panics are not.
    let volume_mount = MountOptions::parse(volume_text);
    let plugin_mount = MountOptions::parse_defaults(plugin_text);
    let _ = MountOptions::parse(plugin_text);
    let plugin_process = ProcessOptions::parse(plugin_text);
    let volume_process = ProcessOptions::parse(volume_text);
    for (input, result) in [(plugin_text, &plugin_mount), (volume_text, &volume_mount)] {
        if let Ok(list) = result {
            // What a tool receives parses back to the same list.
            let again = MountOptions::parse(&list.to_string()).expect("a rendered list parses");
            assert_eq!(&again, list, "round trip of {input:?}");
        }
    }

    if let (Ok(plugin), Ok(volume)) = (&plugin_mount, &volume_mount) {
        let pristine = plugin.clone();
        let merged = plugin.merge(volume);
        assert_eq!(plugin, &pristine, "a merge changed the plugin defaults");
        assert_eq!(&plugin.merge(&MountOptions::default()), plugin);
        assert!(merged.unset_keys().next().is_none(), "'-' survived a merge");
        for option in volume.iter() {
            match option.value.as_deref() {
                Some("-") => assert!(merged.get(&option.key).is_none()),
                _ => assert_eq!(merged.get(&option.key), Some(option)),
            }
        }
        for option in plugin.iter() {
            if volume.get(&option.key).is_none() {
                assert_eq!(merged.get(&option.key), Some(option));
            }
        }
        let _ = merged.redacted();
    }

    if let (Ok(plugin), Ok(volume)) = (&plugin_process, &volume_process) {
        let all = plugin.concat(volume);
        assert_eq!(
            all.items().len(),
            plugin.items().len() + volume.items().len()
        );
        assert_eq!(&all.items()[..plugin.items().len()], plugin.items());
        let values = Placeholders {
            mount_point: "/mnt/{name}",
            source: volume_text,
            name: "vol",
        };
        let argv = all.substitute(&values);
        assert_eq!(argv.len(), all.items().len());
        for (item, arg) in all.items().iter().zip(&argv) {
            if !item.contains('{') {
                assert_eq!(item, arg);
            }
        }
    }
});
