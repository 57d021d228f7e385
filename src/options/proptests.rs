//! The option engine's invariants, stated as properties over generated
//! option strings: what a merge keeps, removes and never touches.

use proptest::prelude::*;
use proptest::sample::select;

use super::{MountOptions, Placeholders, ProcessOptions, UNSET};

/// Keys from a small pool, so that lists share keys often.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["a", "b", "cache", "port", "reconnect", "Port", "ключ"]).prop_map(String::from),
        "[A-Za-z_][A-Za-z0-9_.-]{0,6}",
    ]
}

/// Any value the grammar allows: no ',' and no control character, but '=',
/// whitespace and non-ASCII welcome. Never exactly `-`.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^,\\p{Cc}]{0,8}",
        select(vec!["", "=", "a=b", " x y ", "é ü", "--", "-x"]).prop_map(String::from),
    ]
    .prop_filter("'-' is the unset marker", |v| v != UNSET)
}

type Item = (String, Option<String>);

fn plugin_items() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec((key(), prop::option::of(value())), 0..8)
}

/// A volume's items, `-` included.
fn volume_items() -> impl Strategy<Value = Vec<Item>> {
    let value = prop_oneof![
        3 => prop::option::of(value()),
        1 => Just(Some(UNSET.to_owned())),
    ];
    prop::collection::vec((key(), value), 0..8)
}

/// The items as an option string, with empty items sprinkled in.
fn render(items: &[Item], empties: &[bool]) -> String {
    let mut parts = Vec::new();
    for (i, (k, v)) in items.iter().enumerate() {
        if empties.get(i).copied().unwrap_or(false) {
            parts.push(String::new());
        }
        parts.push(match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        });
    }
    parts.join(",")
}

/// One level's list as the spec says: first position, last value.
fn model_parse(items: &[Item]) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for (k, v) in items {
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// The merge as the spec says it.
fn model_merge(plugin: &[Item], volume: &[Item]) -> Vec<Item> {
    let mut out = plugin.to_vec();
    for (k, v) in volume {
        if v.as_deref() == Some(UNSET) {
            out.retain(|(ok, _)| ok != k);
        } else if let Some(slot) = out.iter_mut().find(|(ok, _)| ok == k) {
            slot.1 = v.clone();
        } else {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

fn items_of(list: &MountOptions) -> Vec<Item> {
    list.iter()
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect()
}

fn parse_plugin(items: &[Item], empties: &[bool]) -> MountOptions {
    MountOptions::parse_defaults(&render(items, empties)).expect("generated defaults parse")
}

fn parse_volume(items: &[Item], empties: &[bool]) -> MountOptions {
    MountOptions::parse(&render(items, empties)).expect("generated volume options parse")
}

proptest! {
    #[test]
    fn merging_an_empty_volume_list_gives_the_plugin_list(
        p in plugin_items(),
        e in prop::collection::vec(any::<bool>(), 8),
        empty in "[,]{0,3}",
    ) {
        let plugin = parse_plugin(&p, &e);
        prop_assert_eq!(plugin.merge(&MountOptions::default()), plugin.clone());
        prop_assert_eq!(plugin.merge(&MountOptions::parse(&empty).unwrap()), plugin);
    }

    #[test]
    fn unsetting_a_key_removes_exactly_that_key(
        p in plugin_items(),
        pick in any::<prop::sample::Index>(),
        other in key(),
    ) {
        let plugin = parse_plugin(&p, &[]);
        let before = items_of(&plugin);
        // a key the plugin has, when it has any, and one it may not have
        let mut keys = vec![other];
        if !before.is_empty() {
            keys.push(before[pick.index(before.len())].0.clone());
        }
        for k in keys {
            let merged = plugin.merge(&MountOptions::parse(&format!("{k}=-")).unwrap());
            let want: Vec<Item> = before.iter().filter(|(ok, _)| *ok != k).cloned().collect();
            prop_assert_eq!(items_of(&merged), want, "unset {}", k);
        }
    }

    #[test]
    fn plugin_defaults_are_unchanged_after_any_merge(
        p in plugin_items(),
        v1 in volume_items(),
        v2 in volume_items(),
    ) {
        let plugin = parse_plugin(&p, &[]);
        let pristine = plugin.clone();
        let first = parse_volume(&v1, &[]);
        let second = parse_volume(&v2, &[]);
        let _ = plugin.merge(&first);
        prop_assert_eq!(&plugin, &pristine);
        // the next volume sees the same defaults as the first did
        prop_assert_eq!(plugin.merge(&second), pristine.merge(&second));
        prop_assert_eq!(plugin.to_string(), render(&model_parse(&p), &[]));
    }

    #[test]
    fn merge_follows_the_spec(
        p in plugin_items(),
        v in volume_items(),
        e in prop::collection::vec(any::<bool>(), 8),
    ) {
        let merged = parse_plugin(&p, &e).merge(&parse_volume(&v, &e));
        let want = model_merge(&model_parse(&p), &model_parse(&v));
        prop_assert_eq!(items_of(&merged), want);
        prop_assert!(merged.unset_keys().next().is_none(), "no '-' survives a merge");
    }

    #[test]
    fn parsing_keeps_first_position_and_last_value(
        v in volume_items(),
        e in prop::collection::vec(any::<bool>(), 8),
    ) {
        let list = parse_volume(&v, &e);
        prop_assert_eq!(items_of(&list), model_parse(&v));
        // what the tool receives parses back to the same list
        prop_assert_eq!(MountOptions::parse(&list.to_string()).unwrap(), list);
    }

    #[test]
    fn parsers_never_panic_and_errors_point_into_the_input(input in "(?s).{0,40}") {
        for result in [MountOptions::parse(&input), MountOptions::parse_defaults(&input)] {
            if let Err(super::OptionError::Item { position, .. }) = result {
                prop_assert!(position >= 1 && position <= input.split(',').count());
            }
        }
        if let Err(super::OptionError::Item { position, .. }) = ProcessOptions::parse(&input) {
            prop_assert!(position >= 1 && position <= input.split('&').count());
        }
    }

    #[test]
    fn process_items_round_trip_and_concatenate_plugin_first(
        p in prop::collection::vec("[^&\\p{Cc}]{1,10}", 0..6),
        v in prop::collection::vec("[^&\\p{Cc}]{1,10}", 0..6),
        doubled in any::<bool>(),
    ) {
        let sep = if doubled { "&&" } else { "&" };
        let plugin = ProcessOptions::parse(&p.join(sep)).unwrap();
        let volume = ProcessOptions::parse(&format!("{}{sep}", v.join(sep))).unwrap();
        prop_assert_eq!(plugin.items(), &p[..]);
        prop_assert_eq!(volume.items(), &v[..]);
        let all = plugin.concat(&volume);
        prop_assert_eq!(all.items(), &[p.clone(), v.clone()].concat()[..]);
        prop_assert_eq!(plugin.concat(&ProcessOptions::default()), plugin.clone());
        prop_assert_eq!(plugin.items(), &p[..], "concat leaves the plugin list alone");
    }

    #[test]
    fn placeholders_touch_only_placeholders(
        item in "[^{]{0,20}",
        name in "[A-Za-z0-9][A-Za-z0-9_.-]{0,10}",
        source in "(?s).{0,20}",
    ) {
        let values = Placeholders { mount_point: "/m/{name}", source: &source, name: &name };
        prop_assert_eq!(values.apply(&item), item.clone());
        prop_assert_eq!(
            values.apply(&format!("{item}{{source}}{{name}}{{mountPoint}}")),
            format!("{item}{source}{name}/m/{{name}}")
        );
    }
}
