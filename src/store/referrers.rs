//! Referrers kept in the store: artifact manifests (SBOMs, provenance) whose `subject` is an image of the
//! store. As ORAS does in OCI layouts, each is an untagged entry of `index.json`; kiln marks it with the
//! subject's digest so `referrers` finds it without reading every manifest, and so `prune` keeps it exactly
//! as long as its subject is kept.

use oci_spec::image::{Descriptor, Digest};

use super::{Store, StoreError, index};

/// The annotation on an `index.json` entry naming the manifest it refers to.
pub const SUBJECT_ANNOTATION: &str = "dev.kiln.referrer.subject";

/// The subject an index entry refers to, when it is a referrer.
pub(crate) fn subject_of(desc: &Descriptor) -> Option<&str> {
    desc.annotations().as_ref()?.get(SUBJECT_ANNOTATION).map(String::as_str)
}

impl Store {
    /// Records `artifact` (a manifest already stored as a blob) as a referrer of `subject`, replacing
    /// earlier referrers of the same subject and artifact type (a rebuild attaches fresh documents).
    pub fn add_referrer(&self, subject: &Digest, artifact: &Descriptor) -> Result<(), StoreError> {
        let mut entry = artifact.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(SUBJECT_ANNOTATION.to_string(), subject.to_string());
        annotations.remove(index::REF_NAME);
        entry.set_annotations(Some(annotations));
        let kind = artifact.artifact_type().clone();
        self.update_index(|manifests| {
            manifests.retain(|d| !(subject_of(d) == Some(subject.as_ref()) && d.artifact_type() == &kind));
            manifests.push(entry);
            true
        })
        .map(|_| ())
    }

    /// The referrers of `subject` recorded in the store.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        let index = index::read(&self.index_path())?;
        let wanted = subject.to_string();
        Ok(index.manifests().iter().filter(|d| subject_of(d) == Some(wanted.as_str())).cloned().collect())
    }

    /// Removes referrer entries whose subject is not in `kept` (digests as `sha256:<hex>`).
    pub(crate) fn drop_referrers_except(&self, kept: &dyn Fn(&str) -> bool) -> Result<(), StoreError> {
        self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|d| subject_of(d).is_none_or(kept));
            manifests.len() != before
        })
        .map(|_| ())
    }
}
