//! Budgets kept in Redis, so that every gateway sharing it counts one
//! budget per consumer.
//!
//! Each consumer is one hash, `{prefix}budget:{consumer}`:
//! - `pend`, `pused`: the end of the period window counted (Unix ms) and
//!   the tokens charged in it;
//! - `s:{second}`: tokens charged in that second, for the rolling minute;
//! - `r:{id}`: `estimate,expires_ms` for each request in flight.
//!
//! Reserving and settling are each one script, the same arithmetic as the
//! in-memory accounts in `mod.rs`: admit only if `used + reserved +
//! estimate` stays within every limit, then hold the estimate; on settle,
//! drop the hold and charge what was used. A reservation whose gateway died
//! before settling expires after [`RESERVATION_TTL_MS`], so a crash holds
//! room for a while but never for good.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use redis::Script;

use super::{BudgetExceeded, BudgetRule, LimitKind};
use weir_state::redis::{RedisStore, RemoteError};

/// How long an unsettled reservation holds room (its gateway may be gone).
pub const RESERVATION_TTL_MS: i64 = 30 * 60_000;
/// How long a consumer's hash outlives its current window.
const KEY_MARGIN_MS: i64 = 60 * 60_000;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A reservation id unique across gateways: random, plus a counter.
fn reservation_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{n:x}", fastrand::u64(..))
}

/// The window end and the key's TTL for `rule` at `now_ms`.
fn window(rule: &BudgetRule, now_ms: i64) -> (i64, i64) {
    let end = match rule.tokens {
        Some(_) => rule.period.unwrap_or_default().window_end_ms(now_ms),
        None => 0,
    };
    let ttl = (end - now_ms).max(RESERVATION_TTL_MS).max(60_000) + KEY_MARGIN_MS;
    (end, ttl)
}

fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reserve `estimate` for `consumer` under `rule`: the reservation's id,
/// or the limit it would break. `Err` when Redis is unavailable (or
/// refused the script), with the cause.
pub(super) async fn reserve(
    redis: &Arc<RedisStore>,
    consumer: &str,
    rule: &BudgetRule,
    estimate: u64,
    now_ms: i64,
) -> Result<Result<String, BudgetExceeded>, String> {
    let key = redis.key(&["budget", consumer]);
    let id = reservation_id();
    let (end, ttl) = window(rule, now_ms);
    let args = [
        now_ms,
        limit_arg(rule.tokens),
        end,
        limit_arg(rule.tokens_per_minute),
        signed(estimate),
        RESERVATION_TTL_MS,
        ttl,
    ];
    let held = id.clone();
    let answer: Vec<i64> = redis
        .run(|mut c| async move {
            let mut call = RESERVE.key(key);
            for arg in args {
                call.arg(arg);
            }
            call.arg(held).invoke_async(&mut c).await
        })
        .await
        .map_err(|e| match e {
            RemoteError::Unavailable(message) | RemoteError::Refused(message) => message,
        })?;
    match answer.as_slice() {
        [1] => Ok(Ok(id)),
        [0, kind, limit, used, reserved, retry] => {
            let limit_kind = if *kind == 1 {
                LimitKind::Budget {
                    period: rule.period.unwrap_or_default(),
                }
            } else {
                LimitKind::TokensPerMinute
            };
            let unsigned = |n: &i64| u64::try_from(*n).unwrap_or(0);
            Ok(Err(BudgetExceeded {
                consumer: consumer.to_owned(),
                limit: limit_kind,
                limit_tokens: unsigned(limit),
                used_tokens: unsigned(used),
                reserved_tokens: unsigned(reserved),
                requested_tokens: estimate,
                retry_after_secs: unsigned(retry).max(1),
            }))
        }
        other => Err(format!("the budget script answered {other:?}")),
    }
}

/// Drop reservation `id` and charge `charge` (tokens, at ms), in the
/// background: settling happens when a response ends, which must not wait
/// on Redis. If Redis is unavailable the charge is lost and the hold
/// expires with its TTL; both are logged.
pub(super) fn release(
    redis: Arc<RedisStore>,
    consumer: String,
    rule: BudgetRule,
    id: String,
    estimate: u64,
    charge: Option<(u64, i64)>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            consumer,
            "budget reservation of {estimate} tokens left to expire: no runtime to settle it"
        );
        return;
    };
    runtime.spawn(async move {
        let now_ms = charge.map_or_else(weir_core::clock::now_ms, |(_, at)| at);
        let (end, ttl) = window(&rule, now_ms);
        let key = redis.key(&["budget", &consumer]);
        let actual = charge.map_or(-1, |(tokens, _)| signed(tokens));
        let minute = i64::from(rule.tokens_per_minute.is_some());
        let settled: Result<i64, RemoteError> = redis
            .run(|mut c| async move {
                SETTLE
                    .key(key)
                    .arg(id)
                    .arg(actual)
                    .arg(now_ms)
                    .arg(end)
                    .arg(ttl)
                    .arg(minute)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        if let Err(RemoteError::Unavailable(e) | RemoteError::Refused(e)) = settled {
            tracing::warn!(
                consumer,
                "could not settle a budget reservation of {estimate} tokens ({} charged): {e}; it expires by itself",
                actual.max(0)
            );
        }
    });
}

/// KEYS[1]: the consumer's hash. ARGV: now ms, period limit (-1: none),
/// the period window's end ms, tokens-per-minute limit (-1: none),
/// estimate, reservation TTL ms, key TTL ms, reservation id.
/// Returns {1} when admitted, or {0, kind (1 period, 2 minute), limit,
/// used, reserved, retry-after s} for the limit that frees last.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local plimit = tonumber(ARGV[2])
local pend = tonumber(ARGV[3])
local mlimit = tonumber(ARGV[4])
local estimate = tonumber(ARGV[5])
local now_s = math.floor(now / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local stored_end, used, reserved, minute_used = 0, 0, 0, 0
local seconds = {}
for i = 1, #fields, 2 do
  local f, v = fields[i], fields[i + 1]
  local tag = string.sub(f, 1, 2)
  if f == 'pend' then
    stored_end = tonumber(v)
  elseif f == 'pused' then
    used = tonumber(v)
  elseif tag == 'r:' then
    local sep = string.find(v, ',', 1, true)
    local amount = tonumber(string.sub(v, 1, sep - 1))
    if tonumber(string.sub(v, sep + 1)) <= now then
      redis.call('HDEL', KEYS[1], f)
    else
      reserved = reserved + amount
    end
  elseif tag == 's:' then
    local second = tonumber(string.sub(f, 3))
    if second <= now_s - 60 then
      redis.call('HDEL', KEYS[1], f)
    else
      table.insert(seconds, {second, tonumber(v)})
      minute_used = minute_used + tonumber(v)
    end
  end
end
-- A new window starts from nothing; a gateway whose clock is behind
-- keeps counting in the later window another one already started.
if stored_end < pend then
  used = 0
  stored_end = pend
end
local refusal = nil
if plimit >= 0 and used + reserved + estimate > plimit then
  local retry = math.max(1, math.ceil((stored_end - now) / 1000))
  refusal = {0, 1, plimit, used, reserved, retry}
end
if mlimit >= 0 and minute_used + reserved + estimate > mlimit then
  table.sort(seconds, function(a, b) return a[1] < b[1] end)
  local excess = minute_used + reserved + estimate - mlimit
  local free_at = now
  for _, entry in ipairs(seconds) do
    free_at = (entry[1] + 60) * 1000
    excess = excess - entry[2]
    if excess <= 0 then break end
  end
  local retry = math.max(1, math.ceil((free_at - now) / 1000))
  if refusal == nil or retry > refusal[6] then
    refusal = {0, 2, mlimit, minute_used, reserved, retry}
  end
end
if refusal ~= nil then
  return refusal
end
if plimit >= 0 then
  redis.call('HSET', KEYS[1], 'pend', stored_end, 'pused', used)
end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[8], estimate .. ',' .. (now + tonumber(ARGV[6])))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {1}
",
    )
});

/// KEYS[1]: the consumer's hash. ARGV: reservation id, tokens used (-1:
/// release only), now ms, the period window's end ms, key TTL ms, whether
/// a tokens-per-minute limit applies (1/0).
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
local actual = tonumber(ARGV[2])
if actual < 0 then
  return 0
end
local pend = tonumber(ARGV[4])
local stored_end = tonumber(redis.call('HGET', KEYS[1], 'pend') or '0')
if stored_end < pend then
  redis.call('HSET', KEYS[1], 'pend', pend, 'pused', actual)
else
  redis.call('HINCRBY', KEYS[1], 'pused', actual)
end
if ARGV[6] == '1' then
  redis.call('HINCRBY', KEYS[1], 's:' .. math.floor(tonumber(ARGV[3]) / 1000), actual)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
",
    )
});
