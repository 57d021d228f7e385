//! A cluster volume's options: its parameters (Swarm's `--opt`), which
//! travel to every node in `volume_context`, and its secrets (Swarm's
//! `--secret`), which come with each node call and are never stored by
//! Swarm in the volume's spec. Pure logic.

use std::collections::{BTreeMap, HashMap};

use crate::options::MountOptions;
use crate::secret::is_secret_key;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error(
        "parameter {0:?} holds a secret; give it as a secret instead (Swarm: --secret {0}=<secret id>; \
         Kubernetes: key {0} of the node-stage Secret)"
    )]
    SecretParameter(String),
    #[error(
        "parameter o sets {0:?}, which holds a secret; give it as a secret instead (Swarm: \
         --secret {0}=<secret id>; Kubernetes: key {0} of the node-stage Secret)"
    )]
    SecretMountOption(String),
    #[error(
        "secret {0:?} is not a secret option; give it as a parameter (Swarm: --opt; Kubernetes: \
         the StorageClass's parameters or the PersistentVolume's volumeAttributes); secrets are \
         `password` and mount options whose name says secret, e.g. pass, token, secret_access_key"
    )]
    NotASecret(String),
    #[error("secret {0:?} may not contain ',', a newline or NUL")]
    BadSecret(String),
    #[error("parameter o: {0}")]
    BadMountOptions(String),
}

/// The prefix of the keys Kubernetes adds to parameters and contexts for
/// itself (the provisioner's `csi.storage.k8s.io/provisioner-secret-name`,
/// kubelet's `csi.storage.k8s.io/pod.name`, ...): never volume options.
pub const KUBERNETES_PREFIX: &str = "csi.storage.k8s.io/";

/// Parameters or a volume context without Kubernetes' own keys.
pub fn own_parameters(params: &HashMap<String, String>) -> HashMap<String, String> {
    params
        .iter()
        .filter(|(k, _)| !k.starts_with(KUBERNETES_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Refuses parameters that hold a secret: parameters are shown by
/// `docker volume inspect` and stored in Swarm's raft log in the clear.
pub fn check_parameters(params: &HashMap<String, String>) -> Result<(), ParamError> {
    for key in params.keys() {
        if is_secret_key(key) {
            return Err(ParamError::SecretParameter(key.clone()));
        }
    }
    if let Some(o) = params.get("o") {
        let parsed =
            MountOptions::parse(o).map_err(|e| ParamError::BadMountOptions(e.to_string()))?;
        let secret = parsed.iter().find(|m| is_secret_key(&m.key));
        if let Some(option) = secret {
            return Err(ParamError::SecretMountOption(option.key.clone()));
        }
    }
    Ok(())
}

/// The volume options a node stages with: the parameters, `password` from
/// the secrets, and every other secret added to `o` as `key=value`.
pub fn volume_options(
    context: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, ParamError> {
    let context = own_parameters(context);
    check_parameters(&context)?;
    let mut opts: BTreeMap<String, String> = context.into_iter().collect();
    let mut keys: Vec<&String> = secrets.keys().collect();
    keys.sort();
    for key in keys {
        let value = &secrets[key];
        if !is_secret_key(key) {
            return Err(ParamError::NotASecret(key.clone()));
        }
        if key == "password" {
            opts.insert(key.clone(), value.clone());
            continue;
        }
        if value.contains([',', '\n', '\0']) {
            return Err(ParamError::BadSecret(key.clone()));
        }
        let item = format!("{key}={value}");
        opts.entry("o".to_owned())
            .and_modify(|o| {
                o.push(',');
                o.push_str(&item);
            })
            .or_insert(item);
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_join_the_parameters() {
        let context = map(&[("source", "u@h:/x"), ("o", "port=2222")]);
        let secrets = map(&[("password", "pw"), ("sftp-pass", "p2")]);
        let opts = volume_options(&context, &secrets).unwrap();
        assert_eq!(opts["password"], "pw");
        assert_eq!(opts["o"], "port=2222,sftp-pass=p2");
        assert_eq!(opts["source"], "u@h:/x");
        let only = volume_options(&map(&[]), &map(&[("token", "t")])).unwrap();
        assert_eq!(only["o"], "token=t");
    }

    #[test]
    fn secrets_never_come_from_parameters() {
        for (params, want) in [
            (
                map(&[("password", "pw")]),
                "parameter \"password\" holds a secret; give it as a secret instead (Swarm: --secret \
                 password=<secret id>; Kubernetes: key password of the node-stage Secret)",
            ),
            (
                map(&[("o", "port=1,password=pw")]),
                "parameter o sets \"password\", which holds a secret; give it as a secret instead \
                 (Swarm: --secret password=<secret id>; Kubernetes: key password of the node-stage Secret)",
            ),
        ] {
            let err = check_parameters(&params).unwrap_err();
            assert_eq!(err.to_string(), want);
            assert!(!err.to_string().contains("pw\""));
            assert!(volume_options(&params, &map(&[])).is_err());
        }
    }

    #[test]
    fn kubernetes_keys_are_not_options() {
        let context = map(&[
            ("source", "u@h:/x"),
            ("csi.storage.k8s.io/pv/name", "pvc-1"),
            ("csi.storage.k8s.io/provisioner-secret-name", "pw"),
        ]);
        let opts = volume_options(&context, &map(&[])).unwrap();
        assert_eq!(opts.keys().collect::<Vec<_>>(), ["source"]);
    }

    #[test]
    fn bad_secrets_are_refused() {
        let err = volume_options(&map(&[]), &map(&[("port", "22")])).unwrap_err();
        assert_eq!(err, ParamError::NotASecret("port".into()));
        let err = volume_options(&map(&[]), &map(&[("pass", "a,b")])).unwrap_err();
        assert_eq!(err, ParamError::BadSecret("pass".into()));
    }
}
