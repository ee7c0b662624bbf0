//! Loads the configuration: merges the layers with figment, hands the merged tree to the
//! core's pure `convoy::config::validate`, and does the I/O the core must not do (reading
//! the config file and `genesys.client_secret_file`).
//!
//! Layers, lowest first: the compiled-in `config/default.toml`, the file from `--config` /
//! `CONVOY_CONFIG`, `CONVOY_*` environment variables (`__` nests:
//! `CONVOY_GENESYS__REGION`; the tools' own `CONVOY_SIM_*`, `CONVOY_CRM_SINK_*`, … are not
//! read), then command-line flags. Every value keeps a note of its layer (for the
//! environment, the exact variable) so problems and `convoy config show` can say where it
//! came from. This module never prints a secret: `entries` redacts them, and `Config`
//! redacts itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use convoy::config::{
    env_name, env_value_is_text, env_var_name, is_secret_key, validate, ClientSecret, Config,
    ConfigErrors, ConfigProblem, EnvName, Secret, REDACTED,
};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value as FigmentValue};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

/// The built-in defaults, the lowest layer.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");

/// Source label of the built-in layer.
const DEFAULT_SOURCE: &str = "default config";
/// Metadata name of the environment layer; the variable name is added per key.
const ENV_SOURCE: &str = "env";

/// What to merge on top of the built-in defaults.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// `--config FILE` (clap also reads `CONVOY_CONFIG` into it).
    pub file: Option<PathBuf>,
    /// Command-line flags that set a key, highest layer.
    pub flags: Vec<FlagOverride>,
    /// Leave out the `CONVOY_*` environment layer (`convoy demo` runs a configuration of
    /// its own, whatever the caller's shell exports).
    pub ignore_environment: bool,
}

/// A command-line flag that sets one configuration key, e.g. `--log-format json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagOverride {
    /// The dotted key, e.g. `log.format`.
    pub key: &'static str,
    /// The flag as typed, e.g. `--log-format`; only used to name the source.
    pub flag: &'static str,
    pub value: String,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Boxed: `figment::Error` is large and would bloat every `Result` here.
    #[error("config file {} is not valid TOML: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("cannot merge the configuration layers: {0}")]
    Merge(#[source] Box<figment::Error>),
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

/// One leaf of the effective configuration, as `config show` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Dotted key.
    pub key: String,
    /// The value; `"***"` for secrets.
    pub value: Value,
    /// e.g. `default config`, `file /etc/convoy.toml`, `env CONVOY_SLA__READ`,
    /// `flag --log-format`, `derived from genesys.region`.
    pub source: Option<String>,
}

/// The merged layers: the tree the core validates, and where each value came from.
pub struct Merged {
    figment: Figment,
    tree: Value,
    /// The directory of the `--config` file: a relative `genesys.client_secret_file`
    /// written in that file is resolved against it, so a deployment can keep
    /// `convoy.toml` and its secret side by side whatever the working directory.
    file_dir: Option<PathBuf>,
    file_source: Option<String>,
    /// Dotted key → the environment variable that set it.
    env_names: BTreeMap<String, String>,
    /// Environment variables refused by name (`convoy_sla__read`), reported with the
    /// validation problems.
    env_problems: Vec<ConfigProblem>,
}

/// Merges the layers. Fails only when the file cannot be read or is not TOML; every
/// problem with the *values* is left for [`Merged::validate`], which reports them all.
pub fn merge(layers: &Layers) -> Result<Merged, LoadError> {
    let mut figment =
        Figment::new().merge(Labeled::new(DEFAULT_SOURCE, Toml::string(DEFAULT_CONFIG)));

    let mut file_dir = None;
    let mut file_source = None;
    if let Some(path) = &layers.file {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let toml = Toml::string(&text);
        // Parse now, so a syntax error names the file rather than surfacing at extraction.
        toml.data().map_err(|source| LoadError::Syntax {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let label = format!("file {}", path.display());
        figment = figment.merge(Labeled::new(label.clone(), toml));
        file_dir = Some(path.parent().map(Path::to_path_buf).unwrap_or_default());
        file_source = Some(label);
    }

    let environment = if layers.ignore_environment {
        EnvLayer::default()
    } else {
        EnvLayer::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            // A variable that is not Unicode cannot be one of ours; leave it alone.
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    };
    let env_names = environment.names.clone();
    let env_problems = environment.problems.clone();
    figment = figment.merge(environment);

    for flag in &layers.flags {
        figment = figment.merge(Labeled::new(
            format!("flag {}", flag.flag),
            Serialized::default(flag.key, flag.value.clone()),
        ));
    }

    let tree: Value = figment
        .extract()
        .map_err(|error| LoadError::Merge(Box::new(error)))?;
    Ok(Merged {
        figment,
        tree,
        file_dir,
        file_source,
        env_names,
        env_problems,
    })
}

/// Merges, validates and resolves the client secret: the `Config` the daemon runs with.
pub fn load(layers: &Layers) -> Result<Config, LoadError> {
    Ok(merge(layers)?.validate()?)
}

impl Merged {
    /// The merged tree, secrets included: never print it, use [`Merged::entries`].
    pub fn tree(&self) -> &Value {
        &self.tree
    }

    /// Where the value at `key` came from, e.g. `env CONVOY_SLA__READ`. For a table set
    /// from the environment (an unknown section such as `slaa`), the variable that
    /// created it.
    pub fn source_of(&self, key: &str) -> Option<String> {
        let metadata = self.figment.find_metadata(key)?;
        if metadata.name != ENV_SOURCE {
            return Some(metadata.name.to_string());
        }
        let nested = format!("{key}.");
        let variable = self.env_names.get(key).cloned().or_else(|| {
            self.env_names
                .iter()
                .find(|(set, _)| set.starts_with(&nested))
                .map(|(_, name)| name.clone())
        });
        Some(format!(
            "env {}",
            variable.unwrap_or_else(|| env_var_name(key))
        ))
    }

    /// Valid settings that will not do what they suggest: the core's warnings, plus a
    /// client secret file that others can read. For `config check` to print and `run` to
    /// log; never fatal.
    pub fn warnings(&self, config: &Config) -> Vec<String> {
        let mut warnings = config.warnings();
        let file_keys = std::iter::once(SECRET_FILE_KEY.to_owned())
            .chain(FILE_BACKED_SECRETS.iter().map(|key| file_key_of(key)));
        for file_key in file_keys {
            let Some(path) = self.named_path(&file_key) else {
                continue;
            };
            let resolved = self.resolve_secret_path(&file_key, Path::new(path));
            if let Some(mode) = readable_by_others(&resolved) {
                warnings.push(format!(
                    "{file_key} {} can be read by other users (mode {mode:04o}); \
                     restrict it with `chmod 0400 {}`",
                    resolved.display(),
                    resolved.display()
                ));
            }
        }
        warnings
    }

    /// Validates the tree (core), then checks what only the shell can: that the log
    /// filter parses and that the client secret file can be read. All problems together.
    pub fn validate(&self) -> Result<Config, ConfigErrors> {
        let origin = |key: &str| self.source_of(key);
        let (tree, file_problems) = self.with_secret_files();
        let validated = validate(&tree, &origin);

        let mut shell_problems = self.env_problems.clone();
        shell_problems.extend(file_problems);
        if let Some(problem) = self.check_log_filter() {
            shell_problems.push(problem);
        }
        match validated {
            Ok(mut config) => {
                if let ClientSecret::File(path) = &config.genesys.client_secret {
                    match self.read_client_secret(path) {
                        Ok(secret) => config.genesys.client_secret = ClientSecret::Value(secret),
                        Err(problem) => shell_problems.push(problem),
                    }
                }
                if shell_problems.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigErrors::new(shell_problems))
                }
            }
            Err(mut errors) => {
                // Still try the secret file, so its problem shows in the same run.
                if let Some(path) = self.named_path(SECRET_FILE_KEY) {
                    if let Err(problem) = self.read_client_secret(Path::new(path)) {
                        shell_problems.push(problem);
                    }
                }
                for problem in shell_problems {
                    errors.push(problem);
                }
                Err(errors)
            }
        }
    }

    /// `convoy replay`: validates like [`Merged::validate`], with the Genesys connection
    /// (bases, client id, secret, followed queues) filled with placeholders where unset,
    /// and a `genesys.client_secret_file` replaced: a replay never connects, and the
    /// secret file of a production configuration need not exist where it is replayed.
    pub fn validate_for_replay(&self) -> Result<Config, ConfigErrors> {
        const PLACEHOLDER_ID: &str = "00000000-0000-4000-8000-000000000000";
        let mut tree = self.tree.clone();
        if let Some(genesys) = tree.get_mut("genesys").and_then(Value::as_object_mut) {
            let unset = |genesys: &serde_json::Map<String, Value>, key: &str| match genesys.get(key)
            {
                None | Some(Value::Null) => true,
                Some(Value::String(text)) => text.trim().is_empty(),
                Some(Value::Array(items)) => items.is_empty(),
                Some(_) => false,
            };
            if unset(genesys, "region") && unset(genesys, "api_base") {
                genesys.insert("api_base".into(), "https://api.replay.invalid".into());
                genesys.insert("login_base".into(), "https://login.replay.invalid".into());
            }
            if unset(genesys, "client_id") {
                genesys.insert("client_id".into(), PLACEHOLDER_ID.into());
            }
            genesys.remove("client_secret_file");
            genesys.insert("client_secret".into(), "replay".into());
            if unset(genesys, "queues") && unset(genesys, "users") {
                genesys.insert("queues".into(), Value::Array(vec![PLACEHOLDER_ID.into()]));
            }
        }
        // The other secrets' files need not exist where a recording is replayed either:
        // the CRM is in-process and the admin server keeps its token check.
        for key in FILE_BACKED_SECRETS {
            let (section, leaf) = split_key(key);
            let Some(table) = tree.get_mut(section).and_then(Value::as_object_mut) else {
                continue;
            };
            if table.remove(&format!("{leaf}_file")).is_some() && !table.contains_key(leaf) {
                table.insert(leaf.to_owned(), "replay".into());
            }
        }
        let origin = |key: &str| self.source_of(key);
        let mut problems = self.env_problems.clone();
        problems.extend(self.check_log_filter());
        match validate(&tree, &origin) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors::new(problems)),
            Err(mut errors) => {
                for problem in problems {
                    errors.push(problem);
                }
                Err(errors)
            }
        }
    }

    /// Every leaf of the merged tree, secrets redacted, with its source; when `config` is
    /// given (the tree validated) the derived Genesys bases are added after their region.
    pub fn entries(&self, config: Option<&Config>) -> Vec<Entry> {
        let mut entries = Vec::new();
        flatten("", &self.tree, &mut |key, value| {
            let value = if is_secret_key(key) {
                Value::String(REDACTED.to_owned())
            } else {
                value.clone()
            };
            entries.push(Entry {
                key: key.to_owned(),
                value,
                source: self.source_of(key),
            });
        });
        let region = config.and_then(|config| {
            let endpoints = &config.genesys.endpoints;
            endpoints.region.map(|_| endpoints)
        });
        if let Some(endpoints) = region {
            let at = entries
                .iter()
                .position(|entry| entry.key == "genesys.region")
                .map_or(entries.len(), |index| index + 1);
            let derived = |key: &str, value: &str| Entry {
                key: key.to_owned(),
                value: Value::String(value.to_owned()),
                source: Some("derived from genesys.region".to_owned()),
            };
            entries.splice(
                at..at,
                [
                    derived("genesys.api_base", &endpoints.api_base),
                    derived("genesys.login_base", &endpoints.login_base),
                ],
            );
        }
        entries
    }

    fn check_log_filter(&self) -> Option<ConfigProblem> {
        let filter = self.tree.pointer("/log/filter")?.as_str()?;
        if filter.trim().is_empty() {
            return None; // the core reports an empty filter
        }
        let error = EnvFilter::try_new(filter).err()?;
        Some(ConfigProblem {
            key: "log.filter".to_owned(),
            value: Some(Value::String(filter.to_owned()).to_string()),
            source: self.source_of("log.filter"),
            reason: format!("not a valid tracing filter: {error}"),
        })
    }

    fn read_client_secret(&self, path: &Path) -> Result<Secret<String>, ConfigProblem> {
        self.read_secret_at(SECRET_FILE_KEY, "the client secret", path)
    }

    /// Reads the file named by `file_key`; surrounding whitespace (the trailing newline
    /// every editor adds) is not part of the secret. Problems name the file, never its
    /// content.
    fn read_secret_at(
        &self,
        file_key: &str,
        what: &str,
        path: &Path,
    ) -> Result<Secret<String>, ConfigProblem> {
        let source = self.source_of(file_key);
        let resolved = self.resolve_secret_path(file_key, path);
        let problem = |reason: String| ConfigProblem {
            key: file_key.to_owned(),
            value: Some(Value::String(path.display().to_string()).to_string()),
            source: source.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&resolved).map_err(|error| {
            problem(format!(
                "cannot read {what} from {}: {error}",
                resolved.display()
            ))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(problem(format!("{} is empty", resolved.display())));
        }
        Ok(Secret::new(secret.to_owned()))
    }
}

impl Merged {
    /// The tree the core validates: each `<secret>_file` of [`FILE_BACKED_SECRETS`]
    /// replaced by the secret its file holds, and the problems met doing so (both forms
    /// given, a file that cannot be read or is empty). The tree is copied only when such a
    /// key is set.
    fn with_secret_files(&self) -> (Cow<'_, Value>, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut resolved: Option<Value> = None;
        for key in FILE_BACKED_SECRETS {
            let file_key = file_key_of(key);
            let Some(path) = self.named_path(&file_key) else {
                continue;
            };
            let (section, leaf) = split_key(key);
            let secret = if self.tree.pointer(&format!("/{section}/{leaf}")).is_some() {
                problems.push(ConfigProblem {
                    key: key.to_owned(),
                    value: Some(format!("\"{REDACTED}\"")),
                    source: self.source_of(key),
                    reason: format!("conflicts with {file_key}: give exactly one"),
                });
                None
            } else {
                match self.read_secret_at(&file_key, key, Path::new(path)) {
                    Ok(secret) => Some(secret.expose_secret().clone()),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                }
            };
            let tree = resolved.get_or_insert_with(|| self.tree.clone());
            if let Some(table) = tree.get_mut(section).and_then(Value::as_object_mut) {
                table.remove(&format!("{leaf}_file"));
                // A stand-in when the file failed: the problem above already fails the
                // load, and "crm.token: required" beside it would mislead.
                let value = secret.unwrap_or_else(|| "unread".to_owned());
                table.entry(leaf.to_owned()).or_insert(Value::String(value));
            }
        }
        let tree = resolved.map_or(Cow::Borrowed(&self.tree), Cow::Owned);
        (tree, problems)
    }

    /// The non-blank path a `*_file` key names, if it is set to text.
    fn named_path(&self, file_key: &str) -> Option<&str> {
        let (section, leaf) = split_key(file_key);
        self.tree
            .pointer(&format!("/{section}/{leaf}"))
            .and_then(Value::as_str)
            .filter(|path| !path.trim().is_empty())
    }

    /// A relative secret file path written in the config file is relative to that file's
    /// directory; from any other layer, to the working directory.
    fn resolve_secret_path(&self, file_key: &str, path: &Path) -> PathBuf {
        let source = self.source_of(file_key);
        let written_in_file = source.is_some() && source == self.file_source;
        match &self.file_dir {
            Some(dir) if written_in_file && path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

const SECRET_FILE_KEY: &str = "genesys.client_secret_file";

/// Secrets that may instead be read from a file named by `<key>_file` (mode 0400, e.g. a
/// systemd credential or a mounted Kubernetes Secret). `genesys.client_secret_file` is the
/// core's own key; these are resolved by the loader before the core validates.
const FILE_BACKED_SECRETS: [&str; 4] = [
    "crm.token",
    "crm.password",
    "crm.hmac_secret",
    "admin.token",
];

fn file_key_of(key: &str) -> String {
    format!("{key}_file")
}

/// `crm.token` → (`crm`, `token`).
fn split_key(key: &str) -> (&str, &str) {
    key.split_once('.').unwrap_or(("", key))
}

/// The permission bits of a file that its group or others may read, or `None` (not
/// readable by them, unreadable metadata, or not Unix).
/// A secret kept in a file (`convoy simulate --client-secret-file`, `convoy crm-sink
/// --auth-file`): the whole file, surrounding whitespace (the editor's final newline)
/// trimmed. Errors name the file, never its content.
pub fn read_secret_file(path: &Path) -> Result<Secret<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(secret.to_owned()))
}

fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Calls `leaf` for every non-table value (lists are leaves; an empty table is a leaf so
/// an empty unknown section still shows up).
fn flatten(prefix: &str, value: &Value, leaf: &mut dyn FnMut(&str, &Value)) {
    match value {
        Value::Object(table) if !table.is_empty() => {
            for (name, child) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, child, leaf);
            }
        }
        _ => leaf(prefix, value),
    }
}

/// A provider under a human name: figment tags each value with its provider's metadata,
/// and this name becomes the source shown next to the value.
struct Labeled<P> {
    name: String,
    inner: P,
}

impl<P> Labeled<P> {
    fn new(name: impl Into<String>, inner: P) -> Self {
        Labeled {
            name: name.into(),
            inner,
        }
    }
}

impl<P: Provider> Provider for Labeled<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// `CONVOY_*` variables, taken from a list of `(name, value)` so tests need not touch the
/// process environment. Names map to keys by [`convoy::config::env_name`] (`__` nests;
/// `CONVOY_CONFIG` and the tools' variables are skipped; a lower-case name is a problem).
/// Values of text keys stay the exact text ("0123" stays "0123", not the number 123, so a
/// numeric-looking secret or id survives); numbers and lists (`[a,b]`) are parsed for the
/// keys that hold them.
#[derive(Debug, Default)]
struct EnvLayer {
    dict: Dict,
    /// Dotted key → variable name, for [`Merged::source_of`].
    names: BTreeMap<String, String>,
    problems: Vec<ConfigProblem>,
}

impl EnvLayer {
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut layer = EnvLayer::default();
        // Sorted, so a run is reproducible whatever order the OS lists variables in.
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        for (name, raw) in vars {
            match env_name(&name) {
                EnvName::Ignored => {}
                EnvName::NotUpperCase { suggestion } => layer.problems.push(ConfigProblem {
                    key: match env_name(&suggestion) {
                        EnvName::Key(key) => key,
                        _ => name.clone(),
                    },
                    value: None,
                    source: Some(format!("env {name}")),
                    reason: format!(
                        "environment variable names are upper case; did you mean {suggestion}?"
                    ),
                }),
                EnvName::Key(key) => {
                    let value = if env_value_is_text(&key) {
                        FigmentValue::from(raw)
                    } else {
                        match raw.parse::<FigmentValue>() {
                            Ok(value) => value,
                            Err(never) => match never {},
                        }
                    };
                    let path: Vec<&str> = key.split('.').collect();
                    insert_path(&mut layer.dict, &path, value);
                    layer.names.insert(key, name);
                }
            }
        }
        layer
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = Map::new();
        data.insert(Profile::Default, self.dict.clone());
        Ok(data)
    }
}

/// Inserts `value` at `path`, creating tables on the way (a scalar in the way is replaced:
/// `CONVOY_LOG=x` and `CONVOY_LOG__FORMAT=json` cannot both be meant).
fn insert_path(dict: &mut Dict, path: &[&str], value: FigmentValue) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let slot = dict
                .entry((*first).to_owned())
                .or_insert_with(|| FigmentValue::from(Dict::new()));
            if slot.as_dict().is_none() {
                *slot = FigmentValue::from(Dict::new());
            }
            if let FigmentValue::Dict(_, inner) = slot {
                insert_path(inner, rest, value);
            }
        }
    }
}

// `figment::Jail` fixes its closures' error type to the large `figment::Error`.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
mod tests {
    use super::*;
    use convoy::config::{CrmAuth, LogFormat};
    use figment::Jail;

    const CLIENT_ID: &str = "7de3af06-c0b3-4f9b-af45-72f4a1403797";
    const QUEUE: &str = "4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b";
    const USER: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

    /// A developer's own `CONVOY_*` variables must not leak into these tests. Clearing
    /// the whole environment would disturb tests running in parallel, so only do it when
    /// there is something to hide (the jail restores it on exit).
    fn isolate(jail: &mut Jail) {
        if std::env::vars_os().any(|(key, _)| key.to_string_lossy().starts_with("CONVOY_")) {
            jail.clear_env();
        }
    }

    fn minimal_file(jail: &mut Jail) -> PathBuf {
        config_file(jail, "convoy.toml", "")
    }

    /// A valid Genesys section at `path` in the jail, followed by `rest`.
    fn config_file(jail: &mut Jail, path: &str, rest: &str) -> PathBuf {
        isolate(jail);
        jail.create_file(
            path,
            &format!(
                "[genesys]\nregion = \"mypurecloud.ie\"\nclient_id = \"{CLIENT_ID}\"\n\
                 client_secret = \"file-secret\"\nqueues = [\"{QUEUE}\"]\n{rest}"
            ),
        )
        .unwrap();
        jail.directory().join(path)
    }

    fn layers(file: PathBuf) -> Layers {
        Layers {
            file: Some(file),
            ..Layers::default()
        }
    }

    /// A figment error for `Jail`'s closure, keeping the original message.
    fn fail(error: impl std::fmt::Display) -> figment::Error {
        figment::Error::from(error.to_string())
    }

    #[test]
    fn the_default_config_parses_and_has_only_known_keys() {
        Jail::expect_with(|jail| {
            isolate(jail);
            let merged = merge(&Layers::default()).map_err(fail)?;
            let errors = merged.validate().unwrap_err();
            // Without a file only the org-specific keys are missing, nothing else.
            let keys: Vec<&str> = errors.problems().iter().map(|p| p.key.as_str()).collect();
            assert_eq!(
                keys,
                vec![
                    "genesys.region",
                    "genesys.client_id",
                    "genesys.client_secret",
                    "genesys.queues"
                ],
                "{errors}"
            );
            assert!(errors
                .problems()
                .iter()
                .all(|p| p.reason.starts_with("required") || p.reason.starts_with("follow")));
            Ok(())
        });
    }

    #[test]
    fn a_replay_needs_no_genesys_connection_and_ignores_a_missing_secret_file() {
        Jail::expect_with(|jail| {
            isolate(jail);
            // Nothing configured: placeholders stand in for the connection.
            let merged = merge(&Layers::default()).map_err(fail)?;
            let config = merged.validate_for_replay().map_err(fail)?;
            assert_eq!(config.sla.answer, std::time::Duration::from_secs(20));
            // A production file: its secret file is not on the replaying machine, its
            // SLA targets are what the replay must use; a real problem is still reported.
            jail.create_file(
                "convoy.toml",
                &format!(
                    "[genesys]\nregion = \"mypurecloud.ie\"\nclient_id = \"{CLIENT_ID}\"\n\
                     client_secret_file = \"/nonexistent/secret\"\nqueues = [\"{QUEUE}\"]\n\
                     [sla]\nanswer = \"45s\"\n"
                ),
            )?;
            let file = jail.directory().join("convoy.toml");
            let config = merge(&layers(file.clone()))
                .map_err(fail)?
                .validate_for_replay()
                .map_err(fail)?;
            assert_eq!(config.sla.answer, std::time::Duration::from_secs(45));
            assert!(merge(&layers(file)).map_err(fail)?.validate().is_err());
            jail.create_file("bad.toml", "[sla]\nanswer = \"soon\"\n")?;
            let errors = merge(&layers(jail.directory().join("bad.toml")))
                .map_err(fail)?
                .validate_for_replay()
                .unwrap_err();
            assert_eq!(errors.problems().len(), 1, "{errors}");
            assert_eq!(errors.problems()[0].key, "sla.answer");
            Ok(())
        });
    }

    #[test]
    fn default_toml_agrees_with_the_core_defaults() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            // Turn CRM on, so its defaults are compared too.
            let text = std::fs::read_to_string(&file).map_err(fail)?;
            jail.create_file(
                "convoy.toml",
                &format!("{text}[crm]\nendpoint = \"https://crm.example.com/in\"\n"),
            )?;
            let merged = merge(&layers(file)).map_err(fail)?;
            let with_defaults_file = merged.validate().map_err(fail)?;
            assert!(with_defaults_file.crm.is_some());
            // The same file validated without default.toml under it: built-in defaults.
            let only_file: Value = Figment::from(Toml::file(jail.directory().join("convoy.toml")))
                .extract()
                .map_err(fail)?;
            let with_core_defaults = validate(&only_file, &|_| None).map_err(fail)?;
            assert_eq!(with_defaults_file, with_core_defaults);
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order_default_file_env_flag() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_GENESYS__REGION", "usw2.pure.cloud");
            jail.set_env("CONVOY_SLA__READ", "10m");
            jail.set_env("CONVOY_LOG__FORMAT", "text");
            let mut layers = layers(file.clone());
            layers.flags.push(FlagOverride {
                key: "log.format",
                flag: "--log-format",
                value: "json".to_owned(),
            });
            let merged = merge(&layers).map_err(fail)?;
            let config = merged.validate().map_err(fail)?;

            assert_eq!(
                config.genesys.endpoints.api_base,
                "https://api.usw2.pure.cloud"
            );
            assert_eq!(config.sla.read, std::time::Duration::from_secs(600));
            assert_eq!(config.log.format, LogFormat::Json);
            assert_eq!(
                merged.source_of("genesys.region").as_deref(),
                Some("env CONVOY_GENESYS__REGION")
            );
            assert_eq!(
                merged.source_of("log.format").as_deref(),
                Some("flag --log-format")
            );
            assert_eq!(
                merged.source_of("genesys.client_id"),
                Some(format!("file {}", file.display()))
            );
            assert_eq!(
                merged.source_of("stream.ping_after_idle").as_deref(),
                Some("default config")
            );
            Ok(())
        });
    }

    #[test]
    fn lists_from_the_environment_work_in_both_spellings() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_GENESYS__QUEUES", format!("[{QUEUE},{USER}]"));
            jail.set_env("CONVOY_GENESYS__USERS", format!("{USER}, {QUEUE}"));
            let config = load(&layers(file)).map_err(fail)?;
            assert_eq!(config.genesys.queues, vec![QUEUE, USER]);
            assert_eq!(config.genesys.users, vec![USER, QUEUE]);
            Ok(())
        });
    }

    #[test]
    fn numeric_looking_secrets_from_the_environment_keep_their_text() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_GENESYS__CLIENT_SECRET", "007");
            jail.set_env("CONVOY_CRM__ENDPOINT", "https://crm.example.com/in");
            jail.set_env("CONVOY_CRM__AUTH", "basic");
            jail.set_env("CONVOY_CRM__USERNAME", "1234");
            jail.set_env("CONVOY_CRM__PASSWORD", "true");
            jail.set_env("CONVOY_CRM__BATCH_SIZE", "50");
            let config = load(&layers(file)).map_err(fail)?;
            let secret = config
                .genesys
                .client_secret
                .value()
                .map(|s| s.expose_secret().clone());
            assert_eq!(secret.as_deref(), Some("007"));
            let crm = config.crm.expect("crm configured");
            assert_eq!(crm.batch_size, 50);
            match crm.auth {
                CrmAuth::Basic { username, password } => {
                    assert_eq!(username, "1234");
                    assert_eq!(password.expose_secret(), "true");
                }
                other => panic!("expected basic auth, got {other:?}"),
            }
            Ok(())
        });
    }

    #[test]
    fn the_tools_variables_are_not_configuration() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_SIM_CLIENT_SECRET", "x");
            jail.set_env("CONVOY_SIM_CLIENT_ID", "y");
            jail.set_env("CONVOY_CRM_SINK_AUTH", "bearer:t");
            jail.set_env("CONVOY_EMULATE_SEED", "3");
            let config = load(&layers(file)).map_err(fail)?;
            assert!(config.crm.is_none());
            Ok(())
        });
    }

    #[test]
    fn an_environment_problem_names_the_variable_that_was_set() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_SLAA__READ", "10m");
            jail.set_env("convoy_sla__delivery", "10m");
            let errors = load(&layers(file)).unwrap_err().to_string();
            assert!(
                errors.contains("slaa (from env CONVOY_SLAA__READ): unknown key"),
                "{errors}"
            );
            assert!(
                errors.contains("sla.delivery (from env convoy_sla__delivery): environment variable names are upper case; did you mean CONVOY_SLA__DELIVERY?"),
                "{errors}"
            );
            Ok(())
        });
    }

    #[test]
    fn ignore_environment_leaves_the_caller_s_variables_out() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_GENESYS__REGION", "nowhere.example");
            let mut layers = layers(file);
            layers.ignore_environment = true;
            let merged = merge(&layers).map_err(fail)?;
            let config = merged.validate().map_err(fail)?;
            assert_eq!(
                config.genesys.endpoints.api_base,
                "https://api.mypurecloud.ie"
            );
            Ok(())
        });
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_is_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        Jail::expect_with(|jail| {
            isolate(jail);
            jail.create_file("secret", "s3cr3t\n")?;
            let secret = jail.directory().join("secret");
            jail.create_file(
                "convoy.toml",
                &format!(
                    "[genesys]\nregion = \"mypurecloud.ie\"\nclient_id = \"{CLIENT_ID}\"\n\
                     client_secret_file = \"secret\"\nqueues = [\"{QUEUE}\"]\n"
                ),
            )?;
            let merged = merge(&layers(jail.directory().join("convoy.toml"))).map_err(fail)?;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644))
                .map_err(fail)?;
            let config = merged.validate().map_err(fail)?;
            let warnings = merged.warnings(&config);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(warnings[0].contains("mode 0644"), "{warnings:?}");
            assert!(!warnings[0].contains("s3cr3t"));
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400))
                .map_err(fail)?;
            assert!(merged.warnings(&config).is_empty());
            Ok(())
        });
    }

    #[test]
    fn problems_from_every_layer_are_reported_together_with_their_source() {
        Jail::expect_with(|jail| {
            isolate(jail);
            jail.create_file(
                "bad.toml",
                &format!(
                    "[genesys]\nregion = \"mypurecloud.xx\"\nclient_id = \"{CLIENT_ID}\"\n\
                     client_secret_file = \"missing-secret\"\nqueues = [\"{QUEUE}\"]\n"
                ),
            )?;
            jail.set_env("CONVOY_SLA__READ", "10");
            jail.set_env("CONVOY_GENESYS_REGION", "mypurecloud.ie");
            let mut layers = layers(jail.directory().join("bad.toml"));
            layers.flags.push(FlagOverride {
                key: "admin.listen",
                flag: "--admin-listen",
                value: "localhost".to_owned(),
            });
            let errors = merge(&layers).map_err(fail)?.validate().unwrap_err();
            let text = errors.to_string();
            let file = format!("file {}", jail.directory().join("bad.toml").display());
            assert!(
                text.contains(&format!(
                    "genesys.region = \"mypurecloud.xx\" (from {file})"
                )),
                "{text}"
            );
            assert!(
                text.contains("sla.read = \"10\" (from env CONVOY_SLA__READ)"),
                "{text}"
            );
            assert!(
                text.contains("admin.listen = \"localhost\" (from flag --admin-listen)"),
                "{text}"
            );
            assert!(
                text.contains("genesys_region (from env CONVOY_GENESYS_REGION): unknown key; did you mean genesys.region (CONVOY_GENESYS__REGION)?"),
                "{text}"
            );
            assert!(text.contains("genesys.client_secret_file"), "{text}");
            assert_eq!(errors.len(), 5, "{text}");
            Ok(())
        });
    }

    #[test]
    fn the_client_secret_file_is_read_relative_to_the_config_file() {
        Jail::expect_with(|jail| {
            isolate(jail);
            jail.create_dir("etc")?;
            jail.create_file("etc/genesys-secret", "from-the-file\n")?;
            jail.create_file(
                "etc/convoy.toml",
                &format!(
                    "[genesys]\nregion = \"mypurecloud.ie\"\nclient_id = \"{CLIENT_ID}\"\n\
                     client_secret_file = \"genesys-secret\"\nqueues = [\"{QUEUE}\"]\n"
                ),
            )?;
            let config = load(&layers(jail.directory().join("etc/convoy.toml"))).map_err(fail)?;
            let secret = config
                .genesys
                .client_secret
                .value()
                .map(|s| s.expose_secret().clone());
            assert_eq!(secret.as_deref(), Some("from-the-file"));
            Ok(())
        });
    }

    #[test]
    fn an_unreadable_secret_file_is_a_problem_naming_the_key() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env(
                "CONVOY_GENESYS__CLIENT_SECRET_FILE",
                "/nonexistent/convoy-secret",
            );
            // The file layer also sets client_secret: that conflict is reported too.
            let errors = load(&layers(file)).unwrap_err().to_string();
            assert!(errors.contains("genesys.client_secret_file = \"/nonexistent/convoy-secret\" (from env CONVOY_GENESYS__CLIENT_SECRET_FILE): cannot read"), "{errors}");
            assert!(
                errors.contains("conflicts with genesys.client_secret_file"),
                "{errors}"
            );
            Ok(())
        });
    }

    fn crm_and_admin_file(jail: &mut Jail, crm_and_admin: &str) -> PathBuf {
        config_file(jail, "etc/convoy.toml", crm_and_admin)
    }

    #[test]
    fn crm_and_admin_secrets_are_read_from_their_files_relative_to_the_config_file() {
        Jail::expect_with(|jail| {
            jail.create_dir("etc")?;
            jail.create_file("etc/crm-token", "crm-from-file\n")?;
            jail.create_file("etc/admin-token", "  admin-from-file \n")?;
            let file = crm_and_admin_file(
                jail,
                "[crm]\nendpoint = \"https://crm.example.com/v1\"\nauth = \"bearer\"\n\
                 token_file = \"crm-token\"\n[admin]\ntoken_file = \"admin-token\"\n",
            );
            let config = load(&layers(file)).map_err(fail)?;
            let crm = config.crm.ok_or("no crm section")?;
            let CrmAuth::Bearer { token } = crm.auth else {
                return Err("not bearer".into());
            };
            assert_eq!(token.expose_secret(), "crm-from-file");
            let admin = config.admin.token.ok_or("no admin token")?;
            assert_eq!(admin.expose_secret(), "admin-from-file");
            Ok(())
        });
    }

    #[test]
    fn a_secret_and_its_file_together_conflict_and_an_unreadable_file_names_its_key() {
        Jail::expect_with(|jail| {
            jail.create_dir("etc")?;
            jail.create_file("etc/hmac", "k3y\n")?;
            let file = crm_and_admin_file(
                jail,
                "[crm]\nendpoint = \"https://crm.example.com/v1\"\nauth = \"hmac\"\n\
                 hmac_secret = \"inline-k3y\"\nhmac_secret_file = \"hmac\"\n\
                 [admin]\ntoken_file = \"/nonexistent/admin-token\"\n",
            );
            let errors = merge(&layers(file)).map_err(fail)?.validate().unwrap_err();
            let text = errors.to_string();
            assert!(
                text.contains("crm.hmac_secret = \"***\"")
                    && text.contains("conflicts with crm.hmac_secret_file: give exactly one"),
                "{text}"
            );
            assert!(
                text.contains("admin.token_file = \"/nonexistent/admin-token\"")
                    && text.contains("cannot read admin.token from"),
                "{text}"
            );
            assert!(!text.contains("k3y"), "a secret leaked into: {text}");
            assert_eq!(
                errors.len(),
                2,
                "no 'required' beside the file's problem: {text}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_log_filter_is_reported_as_a_config_problem() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_LOG__FILTER", "convoy=loud");
            let errors = load(&layers(file)).unwrap_err().to_string();
            assert!(errors.contains("log.filter = \"convoy=loud\" (from env CONVOY_LOG__FILTER): not a valid tracing filter"), "{errors}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_or_broken_file_fails_before_validation() {
        Jail::expect_with(|jail| {
            isolate(jail);
            let missing = load(&layers(jail.directory().join("nope.toml"))).unwrap_err();
            assert!(matches!(missing, LoadError::ReadFile { .. }), "{missing}");
            jail.create_file("broken.toml", "[genesys\nregion = ")?;
            let broken = load(&layers(jail.directory().join("broken.toml"))).unwrap_err();
            assert!(matches!(broken, LoadError::Syntax { .. }), "{broken}");
            assert!(broken.to_string().contains("broken.toml"));
            Ok(())
        });
    }

    #[test]
    fn entries_redact_secrets_and_name_sources_and_derived_bases() {
        Jail::expect_with(|jail| {
            let file = minimal_file(jail);
            jail.set_env("CONVOY_CRM__TOKEN", "env-token-value");
            jail.set_env("CONVOY_CRM__AUTH", "bearer");
            jail.set_env("CONVOY_CRM__ENDPOINT", "https://crm.example.com/in");
            let merged = merge(&layers(file)).map_err(fail)?;
            let config = merged.validate().map_err(fail)?;
            let entries = merged.entries(Some(&config));
            let shown = format!("{entries:?}");
            assert!(
                !shown.contains("file-secret") && !shown.contains("env-token-value"),
                "{shown}"
            );
            let find = |key: &str| entries.iter().find(|e| e.key == key).cloned().unwrap();
            assert_eq!(
                find("genesys.client_secret").value,
                Value::String("***".into())
            );
            assert_eq!(
                find("crm.token").source.as_deref(),
                Some("env CONVOY_CRM__TOKEN")
            );
            let api = find("genesys.api_base");
            assert_eq!(
                api.value,
                Value::String("https://api.mypurecloud.ie".into())
            );
            assert_eq!(api.source.as_deref(), Some("derived from genesys.region"));
            assert_eq!(find("genesys.queues").value, serde_json::json!([QUEUE]));
            Ok(())
        });
    }

    #[test]
    fn the_readme_documents_every_key_with_its_environment_variable() {
        let readme = include_str!("../../README.md");
        for spec in convoy::config::KEYS {
            let row = format!("| `{}` |", spec.key);
            let line = readme.lines().find(|line| line.starts_with(&row));
            let documented = line.is_some_and(|line| line.contains(&env_var_name(spec.key)));
            assert!(
                documented,
                "README.md has no row for {} with {}",
                spec.key,
                env_var_name(spec.key)
            );
        }
    }

    #[test]
    fn every_example_config_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
        let mut checked = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            // Simulator scenarios share the folder; a file with no Convoy section is not
            // a Convoy configuration.
            let tree: Value = Figment::from(Toml::file(&path)).extract().unwrap();
            let is_convoy_config = tree
                .as_object()
                .is_some_and(|table| table.keys().any(|key| convoy::config::is_section(key)));
            if !is_convoy_config {
                continue;
            }
            Jail::expect_with(|jail| {
                isolate(jail);
                let result = load(&layers(path.clone()));
                assert!(
                    result.is_ok(),
                    "{}: {}",
                    path.display(),
                    result.err().map(|e| e.to_string()).unwrap_or_default()
                );
                Ok(())
            });
            checked.extend(
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned()),
            );
        }
        checked.sort();
        assert!(
            ["emulator.toml", "production.toml"]
                .iter()
                .all(|name| checked.iter().any(|c| c == name)),
            "expected the emulator and production examples in {}, checked {checked:?}",
            dir.display()
        );
    }
}
