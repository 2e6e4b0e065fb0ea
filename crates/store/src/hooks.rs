//! Checks that an external CI posts on merge requests, the checks a path
//! requires before a merge, and webhooks with their delivery queue.
//!
//! A check is of one head commit, as an approval is: a push that moves the
//! head leaves the old statuses behind, and the new head has none until
//! the CI posts again.
//!
//! Deliveries are rows (`webhook_deliveries`), so any server process can
//! deliver any of them: a process claims one by moving its lease forward
//! with a compare-and-swap, delivers it, and records the outcome. A
//! process that dies holding a lease lets it lapse, and another retries.

use sqlx::Row;

use crate::{now, opt_text, text, Error, ObjectId, Store};

/// The states a check may be in.
pub const CHECK_STATES: &[&str] = &["pending", "success", "failure"];

/// The events webhooks may subscribe to.
pub const EVENTS: &[&str] = &["push", "mr.opened", "mr.updated", "mr.merged", "mr.closed"];

/// Attempts at delivering one event before it is given up.
pub const MAX_ATTEMPTS: i64 = 5;

/// One check of a merge request's head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub state: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub head: String,
    /// Who posted it last.
    pub by: String,
    pub updated_at: i64,
}

/// A webhook of a path: events at the path or below it are delivered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Webhook {
    pub id: i64,
    pub path: String,
    pub url: String,
    #[serde(skip)]
    pub secret: String,
    pub events: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub hook: Webhook,
    pub event: String,
    pub payload: String,
    /// This attempt's number, from 1.
    pub attempt: i64,
}

/// A delivery as recorded, for its log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b" ._/:-".contains(&b));
    if !ok {
        return Err(Error::Invalid(format!("check name {name:?}: 1 to 100 letters, digits, spaces and . _ / : -")));
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), Error> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if !ok {
        return Err(Error::Invalid(format!("{field} must be an http(s) URL of at most 2048 characters")));
    }
    Ok(())
}

/// Whether `path` is `at` or below it.
pub(crate) fn covers(at: &str, path: &str) -> bool {
    at == "/" || path == at || path.strip_prefix(at).is_some_and(|rest| rest.starts_with('/'))
}

/// Seconds before attempt `n + 1` of a delivery whose attempt `n` failed:
/// 1, 2, 4, 8 seconds times `base_secs`.
pub fn backoff(n: i64, base_secs: i64) -> i64 {
    base_secs.max(1) << (n - 1).clamp(0, 10)
}

impl Store {
    /// Records check `name` of request `mr_id` at `head`, as posted by `by`.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_check(
        &self,
        mr_id: i64,
        head: ObjectId,
        name: &str,
        state: &str,
        url: Option<&str>,
        description: Option<&str>,
        by: &str,
    ) -> Result<Check, Error> {
        check_name(name)?;
        if !CHECK_STATES.contains(&state) {
            return Err(Error::Invalid(format!("check state {state:?}: pending, success or failure")));
        }
        if let Some(u) = url {
            check_url("url", u)?;
        }
        if description.is_some_and(|d| d.len() > 1000) {
            return Err(Error::Invalid("a check's description has at most 1000 bytes".into()));
        }
        let _guard = self.write_guard().await;
        let updated_at = now();
        let head = head.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM mr_checks WHERE mr_id = ? AND name = ? AND head_commit = ?"))
            .bind(mr_id)
            .bind(name)
            .bind(&head)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.sql(
            "INSERT INTO mr_checks (mr_id, name, head_commit, state, url, description, updated_by, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(mr_id)
        .bind(name)
        .bind(&head)
        .bind(state)
        .bind(url)
        .bind(description)
        .bind(by)
        .bind(updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Check {
            name: name.into(),
            state: state.into(),
            url: url.map(Into::into),
            description: description.map(Into::into),
            head,
            by: by.into(),
            updated_at,
        })
    }

    /// The checks of request `mr_id` at `head`, by name.
    pub async fn checks(&self, mr_id: i64, head: ObjectId) -> Result<Vec<Check>, Error> {
        let sql = self.sql(
            "SELECT name, state, url, description, head_commit, updated_by, updated_at FROM mr_checks \
             WHERE mr_id = ? AND head_commit = ? ORDER BY name",
        );
        let rows = sqlx::query(&sql).bind(mr_id).bind(head.to_string()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Check {
                    name: text(r, 0)?,
                    state: text(r, 1)?,
                    url: opt_text(r, 2)?,
                    description: opt_text(r, 3)?,
                    head: text(r, 4)?,
                    by: text(r, 5)?,
                    updated_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Sets the checks that must succeed before merges below `path` (none:
    /// no check required there, whatever `path`'s ancestors require).
    pub async fn set_required_checks(&self, path: &str, names: &[String]) -> Result<(), Error> {
        if names.len() > 20 {
            return Err(Error::Invalid("at most 20 required checks".into()));
        }
        for n in names {
            check_name(n)?;
            if n.contains(',') {
                return Err(Error::Invalid(format!("check name {n:?} contains a comma")));
            }
        }
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM path_checks WHERE path = ?")).bind(path).execute(&mut *tx).await?;
        sqlx::query(&self.sql("INSERT INTO path_checks (path, names) VALUES (?, ?)"))
            .bind(path)
            .bind(names.join(","))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The checks a merge at `path` needs: the setting of `path` or of its
    /// nearest ancestor that has one, with where it was set.
    pub async fn required_checks(&self, path: &str) -> Result<(Vec<String>, String), Error> {
        let rows = sqlx::query("SELECT path, names FROM path_checks").fetch_all(&self.pool).await?;
        let mut best: Option<(String, String)> = None;
        for r in &rows {
            let at = text(r, 0)?;
            if covers(&at, path) && best.as_ref().is_none_or(|(b, _)| at.len() > b.len()) {
                best = Some((at, text(r, 1)?));
            }
        }
        Ok(match best {
            Some((at, names)) => (names.split(',').filter(|n| !n.is_empty()).map(String::from).collect(), at),
            None => (Vec::new(), "/".into()),
        })
    }

    /// Adds a webhook of `path` for `events`, sending to `url`, signed with `secret`.
    pub async fn add_webhook(
        &self,
        path: &str,
        url: &str,
        secret: &str,
        events: &[String],
        by: &str,
    ) -> Result<Webhook, Error> {
        check_url("url", url)?;
        if secret.len() < 16 || secret.len() > 256 {
            return Err(Error::Invalid("a webhook secret has 16 to 256 bytes".into()));
        }
        if events.is_empty() || events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
            return Err(Error::Invalid(format!("events: one or more of {}", EVENTS.join(", "))));
        }
        let _guard = self.write_guard().await;
        let created_at = now();
        let joined = events.join(",");
        let id = self
            .insert_id(
                &self.pool,
                "INSERT INTO webhooks (path, url, secret, events, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                vec![path.into(), url.into(), secret.into(), joined.into(), by.into(), created_at.into()],
            )
            .await?;
        Ok(Webhook {
            id,
            path: path.into(),
            url: url.into(),
            secret: secret.into(),
            events: events.to_vec(),
            created_by: by.into(),
            created_at,
        })
    }

    fn webhook_from_row(r: &sqlx::any::AnyRow) -> Result<Webhook, Error> {
        Ok(Webhook {
            id: r.try_get(0)?,
            path: text(r, 1)?,
            url: text(r, 2)?,
            secret: text(r, 3)?,
            events: text(r, 4)?.split(',').map(String::from).collect(),
            created_by: text(r, 5)?,
            created_at: r.try_get(6)?,
        })
    }

    const HOOK_COLUMNS: &'static str = "id, path, url, secret, events, created_by, created_at";

    /// The webhooks set at `path` itself.
    pub async fn webhooks(&self, path: &str) -> Result<Vec<Webhook>, Error> {
        let sql = self.sql(&format!("SELECT {} FROM webhooks WHERE path = ? ORDER BY id", Self::HOOK_COLUMNS));
        let rows = sqlx::query(&sql).bind(path).fetch_all(&self.pool).await?;
        rows.iter().map(Self::webhook_from_row).collect()
    }

    pub async fn webhook(&self, id: i64) -> Result<Option<Webhook>, Error> {
        let sql = self.sql(&format!("SELECT {} FROM webhooks WHERE id = ?", Self::HOOK_COLUMNS));
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::webhook_from_row).transpose()
    }

    /// Removes a webhook and its pending deliveries.
    pub async fn delete_webhook(&self, id: i64) -> Result<bool, Error> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql("DELETE FROM webhook_deliveries WHERE hook_id = ? AND state = 'pending'"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query(&self.sql("DELETE FROM webhooks WHERE id = ?")).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone.rows_affected() > 0)
    }

    /// Queues `event` at `path` for every webhook at `path` or above it that
    /// subscribes to it; returns how many deliveries were queued.
    pub async fn enqueue_event(&self, path: &str, event: &str, payload: &str) -> Result<u64, Error> {
        let sql = format!("SELECT {} FROM webhooks", Self::HOOK_COLUMNS);
        let hooks: Vec<Webhook> = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::webhook_from_row)
            .collect::<Result<_, _>>()?;
        let hooks: Vec<&Webhook> =
            hooks.iter().filter(|h| covers(&h.path, path) && h.events.iter().any(|e| e == event)).collect();
        if hooks.is_empty() {
            return Ok(0);
        }
        let _guard = self.write_guard().await;
        let created_at = now();
        let mut tx = self.pool.begin().await?;
        let insert = self.sql(
            "INSERT INTO webhook_deliveries (hook_id, event, payload, state, attempts, next_at, lease_until, created_at) \
             VALUES (?, ?, ?, 'pending', 0, ?, 0, ?)",
        );
        for h in &hooks {
            sqlx::query(&insert)
                .bind(h.id)
                .bind(event)
                .bind(payload)
                .bind(created_at)
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(hooks.len() as u64)
    }

    /// Claims the next delivery that is due, for `lease_secs`: one process
    /// wins each, by compare-and-swap on its lease.
    pub async fn claim_delivery(&self, lease_secs: i64) -> Result<Option<Delivery>, Error> {
        let at = now();
        let due = self.sql(
            "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_at <= ? AND lease_until <= ? \
             ORDER BY next_at, id LIMIT 8",
        );
        let ids: Vec<i64> = sqlx::query(&due)
            .bind(at)
            .bind(at)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let claim = self.sql(
            "UPDATE webhook_deliveries SET lease_until = ?, attempts = attempts + 1 \
             WHERE id = ? AND state = 'pending' AND lease_until <= ?",
        );
        for id in ids {
            let won = {
                let _guard = self.write_guard().await;
                sqlx::query(&claim).bind(at + lease_secs).bind(id).bind(at).execute(&self.pool).await?.rows_affected()
            };
            if won == 0 {
                continue;
            }
            let sql = self.sql("SELECT hook_id, event, payload, attempts FROM webhook_deliveries WHERE id = ?");
            let row = sqlx::query(&sql).bind(id).fetch_one(&self.pool).await?;
            let Some(hook) = self.webhook(row.try_get(0)?).await? else { continue };
            return Ok(Some(Delivery {
                id,
                hook,
                event: text(&row, 1)?,
                payload: text(&row, 2)?,
                attempt: row.try_get(3)?,
            }));
        }
        Ok(None)
    }

    /// Records how attempt `attempt` of delivery `id` went: delivered
    /// (`Ok(status)`), or failed and due again in `retry_in` seconds, or
    /// given up when that was the last attempt.
    pub async fn finish_delivery(
        &self,
        id: i64,
        attempt: i64,
        outcome: Result<u16, (Option<u16>, String)>,
        retry_in: i64,
    ) -> Result<(), Error> {
        let _guard = self.write_guard().await;
        let at = now();
        match outcome {
            Ok(status) => {
                let sql = self.sql(
                    "UPDATE webhook_deliveries SET state = 'delivered', last_status = ?, last_error = NULL, \
                     delivered_at = ?, lease_until = 0 WHERE id = ?",
                );
                sqlx::query(&sql).bind(i64::from(status)).bind(at).bind(id).execute(&self.pool).await?;
            }
            Err((status, error)) => {
                let state = if attempt >= MAX_ATTEMPTS { "failed" } else { "pending" };
                let sql = self.sql(
                    "UPDATE webhook_deliveries SET state = ?, last_status = ?, last_error = ?, next_at = ?, \
                     lease_until = 0 WHERE id = ?",
                );
                let error: String = error.chars().take(1000).collect();
                sqlx::query(&sql)
                    .bind(state)
                    .bind(status.map(i64::from))
                    .bind(error)
                    .bind(at + retry_in)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The latest deliveries of a webhook, newest first.
    pub async fn deliveries(&self, hook_id: i64, limit: i64) -> Result<Vec<DeliveryRecord>, Error> {
        let sql = self.sql(
            "SELECT id, event, state, attempts, last_status, last_error, created_at, delivered_at \
             FROM webhook_deliveries WHERE hook_id = ? ORDER BY id DESC LIMIT ?",
        );
        let rows = sqlx::query(&sql).bind(hook_id).bind(limit.clamp(1, 1000)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    id: r.try_get(0)?,
                    event: text(r, 1)?,
                    state: text(r, 2)?,
                    attempts: r.try_get(3)?,
                    last_status: r.try_get(4)?,
                    last_error: opt_text(r, 5)?,
                    created_at: r.try_get(6)?,
                    delivered_at: r.try_get(7)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        assert_eq!((1..=4).map(|n| backoff(n, 1)).collect::<Vec<_>>(), [1, 2, 4, 8]);
        assert_eq!(backoff(1, 30), 30);
    }

    #[test]
    fn paths_cover_what_is_below_them() {
        assert!(covers("/", "/a/b") && covers("/a", "/a") && covers("/a", "/a/b"));
        assert!(!covers("/a", "/ab") && !covers("/a/b", "/a"));
    }
}
