//! Seals in PostgreSQL (migration `20261201000100_seals.sql`): the log's
//! Merkle tree as the hash of every complete subtree (`seal_leaves`,
//! `seal_nodes`), signed heads (`seal_heads`), and what reads them: the
//! latest head, inclusion and consistency proofs (one query for a proof's
//! nodes), and the check of every recorded head against the stored events.
//! The tree math is [`tasklog_event_store::merkle`]'s; this module only
//! fetches and stores.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};
use tasklog_event_store::merkle::{self, Frontier, Hash, MissingNode, Node};
use tasklog_event_store::seal::{
    event_leaf, ConsistencyProof, HeadFinding, Hex, HexHash, InclusionProof, LeafDifference,
    SignedTreeHead, TreeHead, CONSISTENCY_FORMAT, HEAD_FORMAT, INCLUSION_FORMAT,
};
use tasklog_event_store::{LogPosition, RecordedEvent};
use uuid::Uuid;

/// The role the sealer logs in as: the only one that may insert seals.
pub const SEALER_ROLE: &str = "tasklog_sealer";

/// A pool like `pool` that logs in as [`SEALER_ROLE`] (same password, if any).
pub fn sealer_pool(pool: &PgPool, size: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .username(SEALER_ROLE)
        .application_name("tasklog-sealer");
    pool.options()
        .clone()
        .max_connections(size)
        .min_connections(0)
        .connect_lazy_with(options)
}

/// Errors of the seals' storage. The HTTP meaning is on each variant.
#[derive(Debug, thiserror::Error)]
pub enum SealStoreError {
    /// Nothing sealed and signed yet (404).
    #[error("no signed tree head yet")]
    NoHeads,
    /// No signed head of this size (404): proofs are given against recorded heads.
    #[error("no signed tree head of size {0}")]
    NoHead(u64),
    /// The event is unknown, or not in the tree of that head (404).
    #[error("{0} is not sealed in the tree of size {1}")]
    NotSealed(String, u64),
    /// A consistency proof from a larger tree to a smaller one (422).
    #[error("a tree of size {from} cannot be a prefix of one of size {to}")]
    Reversed { from: u64, to: u64 },
    /// A subtree the proof needs is not stored (500: a sealer bug, or seals removed).
    #[error(transparent)]
    Missing(#[from] MissingNode),
    /// A stored hash is not 32 bytes, or a number out of range (500).
    #[error("corrupt seal row: {0}")]
    Corrupt(String),
    /// The database failed (500; 503 when unreachable).
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

type Result<T> = std::result::Result<T, SealStoreError>;

/// Which event an inclusion proof is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafRef {
    Event(Uuid),
    Position(LogPosition),
}

impl std::fmt::Display for LeafRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeafRef::Event(id) => write!(f, "event {id}"),
            LeafRef::Position(p) => write!(f, "position {p}"),
        }
    }
}

fn hash32(bytes: &[u8]) -> Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| SealStoreError::Corrupt(format!("a hash of {} bytes", bytes.len())))
}

const SELECT_HEAD: &str = "SELECT tree_size, root_hash, last_commit, last_position, sealed_at, \
    signature FROM seal_heads";

fn decode_head(row: &sqlx::postgres::PgRow) -> Result<SignedTreeHead> {
    let signature: Vec<u8> = row.try_get("signature")?;
    Ok(SignedTreeHead {
        format: HEAD_FORMAT.to_owned(),
        head: TreeHead {
            tree_size: row.try_get::<i64, _>("tree_size")? as u64,
            root_hash: Hex(hash32(row.try_get("root_hash")?)?),
            last_position: LogPosition {
                commit: row.try_get::<i64, _>("last_commit")? as u64,
                event: row.try_get::<i64, _>("last_position")? as u64,
            },
            sealed_at: row.try_get("sealed_at")?,
        },
        signature: Hex(signature
            .as_slice()
            .try_into()
            .map_err(|_| SealStoreError::Corrupt("a signature not of 64 bytes".into()))?),
    })
}

/// The latest signed head; `None` before the first.
pub async fn latest_head<'e>(db: impl PgExecutor<'e>) -> Result<Option<SignedTreeHead>> {
    let row = sqlx::query(&format!("{SELECT_HEAD} ORDER BY tree_size DESC LIMIT 1"))
        .fetch_optional(db)
        .await?;
    row.as_ref().map(decode_head).transpose()
}

/// The signed head of `tree_size`.
pub async fn head<'e>(db: impl PgExecutor<'e>, tree_size: u64) -> Result<SignedTreeHead> {
    let row = sqlx::query(&format!("{SELECT_HEAD} WHERE tree_size = $1"))
        .bind(tree_size as i64)
        .fetch_optional(db)
        .await?;
    row.as_ref()
        .map(decode_head)
        .transpose()?
        .ok_or(SealStoreError::NoHead(tree_size))
}

/// Every signed head of a size above `after`, smallest first.
pub async fn heads<'e>(db: impl PgExecutor<'e>, after: Option<u64>) -> Result<Vec<SignedTreeHead>> {
    let rows = sqlx::query(&format!(
        "{SELECT_HEAD} WHERE tree_size > $1 ORDER BY tree_size"
    ))
    .bind(after.map_or(-1, |a| a as i64))
    .fetch_all(db)
    .await?;
    rows.iter().map(decode_head).collect()
}

/// Which head a proof is against: `WHERE` of the head of `$1`, or the latest.
fn head_filter(tree_size: Option<u64>) -> &'static str {
    match tree_size {
        Some(_) => "WHERE tree_size = $1",
        None => "WHERE $1::int8 IS NULL ORDER BY tree_size DESC LIMIT 1",
    }
}

fn no_head(tree_size: Option<u64>) -> SealStoreError {
    tree_size.map_or(SealStoreError::NoHeads, SealStoreError::NoHead)
}

/// The stored hashes of `nodes`, in one query (leaves from `seal_leaves`,
/// the rest from `seal_nodes`).
async fn fetch_nodes<'e>(db: impl PgExecutor<'e>, nodes: &[Node]) -> Result<HashMap<Node, Hash>> {
    let leaves: Vec<i64> = nodes
        .iter()
        .filter(|n| n.level == 0)
        .map(|n| n.index as i64)
        .collect();
    let (levels, indexes): (Vec<i16>, Vec<i64>) = nodes
        .iter()
        .filter(|n| n.level > 0)
        .map(|n| (n.level as i16, n.index as i64))
        .unzip();
    let rows: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT 0::int2, leaf_index, hash FROM seal_leaves WHERE leaf_index = ANY($1) \
         UNION ALL \
         SELECT n.level, n.idx, n.hash FROM unnest($2::int2[], $3::int8[]) AS w(level, idx) \
           JOIN seal_nodes n ON n.level = w.level AND n.idx = w.idx",
    )
    .bind(&leaves)
    .bind(&levels)
    .bind(&indexes)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(level, index, hash)| {
            Ok((
                Node {
                    level: level as u8,
                    index: index as u64,
                },
                hash32(&hash)?,
            ))
        })
        .collect()
}

async fn proof_path<'e>(
    db: impl PgExecutor<'e>,
    ranges: &[std::ops::Range<u64>],
) -> Result<Vec<HexHash>> {
    let nodes = fetch_nodes(db, &merkle::nodes_of(ranges)).await?;
    Ok(merkle::assemble(ranges, &nodes)?
        .into_iter()
        .map(Hex)
        .collect())
}

/// The inclusion proof of an event against the signed head of `tree_size`
/// (the latest when `None`). The leaf data is the event's hash as stored
/// now: a proof for an event changed since it was sealed does not verify.
/// With `org`, only that organization's events are proved (another's is
/// [`SealStoreError::NotSealed`], exactly as a missing one: the API's tenant
/// rule). Two round trips: the head with the leaf, then the proof's nodes.
pub async fn inclusion_proof(
    pool: &PgPool,
    leaf: LeafRef,
    tree_size: Option<u64>,
    org: Option<Uuid>,
) -> Result<InclusionProof> {
    let leaf_filter = match leaf {
        LeafRef::Event(_) => "e.event_id = $2 AND ($3::uuid IS NULL OR e.org_id = $3)",
        LeafRef::Position(_) => {
            "l.global_position = $3 AND l.commit_id = $2 AND ($4::uuid IS NULL OR e.org_id = $4)"
        }
    };
    let query = format!(
        "WITH h AS ({SELECT_HEAD} {}) \
         SELECT h.*, x.* FROM h LEFT JOIN LATERAL ( \
             SELECT l.leaf_index, l.commit_id, l.global_position, e.event_id, e.hash \
             FROM seal_leaves l JOIN events e ON e.global_position = l.global_position \
             WHERE {leaf_filter}) x ON true",
        head_filter(tree_size)
    );
    let query = sqlx::query(&query).bind(tree_size.map(|s| s as i64));
    let query = match leaf {
        LeafRef::Event(id) => query.bind(id).bind(org),
        LeafRef::Position(p) => query.bind(p.commit as i64).bind(p.event as i64).bind(org),
    };
    let row = query
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| no_head(tree_size))?;
    let head = decode_head(&row)?;
    let size = head.head.tree_size;
    let index: Option<i64> = row.try_get("leaf_index")?;
    let index = match index {
        Some(i) if (i as u64) < size => i as u64,
        _ => return Err(SealStoreError::NotSealed(leaf.to_string(), size)),
    };
    let hash: Vec<u8> = row.try_get("hash")?;
    let path = proof_path(pool, &merkle::inclusion_ranges(index, size)).await?;
    Ok(InclusionProof {
        format: INCLUSION_FORMAT.to_owned(),
        head,
        leaf_index: index,
        event_id: row.try_get("event_id")?,
        position: position(row.try_get("commit_id")?, row.try_get("global_position")?),
        event_hash: Hex(hash32(&hash)?),
        path,
    })
}

/// The consistency proof from the signed head of `from` to the one of `to`
/// (the latest when `None`). Two round trips: both heads, then the nodes.
pub async fn consistency_proof(
    pool: &PgPool,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof> {
    let rows = sqlx::query(&format!(
        "{SELECT_HEAD} WHERE tree_size = $1 \
            OR tree_size = coalesce($2, (SELECT max(tree_size) FROM seal_heads)) \
         ORDER BY tree_size"
    ))
    .bind(from as i64)
    .bind(to.map(|t| t as i64))
    .fetch_all(pool)
    .await?;
    let heads = rows.iter().map(decode_head).collect::<Result<Vec<_>>>()?;
    let find = |size: u64| heads.iter().find(|h| h.head.tree_size == size).cloned();
    let from = find(from).ok_or(SealStoreError::NoHead(from))?;
    let to = match to {
        Some(size) => find(size).ok_or(SealStoreError::NoHead(size))?,
        None => heads.last().cloned().ok_or(SealStoreError::NoHeads)?,
    };
    let (m, n) = (from.head.tree_size, to.head.tree_size);
    if m > n {
        return Err(SealStoreError::Reversed { from: m, to: n });
    }
    let path = proof_path(pool, &merkle::consistency_ranges(m, n)).await?;
    Ok(ConsistencyProof {
        format: CONSISTENCY_FORMAT.to_owned(),
        from,
        to,
        path,
    })
}

/// Where the sealer stands: the tree's right edge, the last event sealed,
/// and the last head signed.
#[derive(Debug, Clone)]
pub struct SealedTree {
    pub frontier: Frontier,
    pub last: LogPosition,
    pub last_head: Option<TreeHead>,
}

/// Reads where the sealer stands (a few rows).
pub async fn load_tree(conn: &mut PgConnection) -> Result<SealedTree> {
    let last: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT leaf_index, commit_id, global_position FROM seal_leaves \
         ORDER BY leaf_index DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let (size, last) = last.map_or((0, LogPosition::START), |(i, c, p)| {
        (
            i as u64 + 1,
            LogPosition {
                commit: c as u64,
                event: p as u64,
            },
        )
    });
    let edge = merkle::range_nodes(0..size);
    let stored = fetch_nodes(&mut *conn, &edge).await?;
    let hashes = edge
        .iter()
        .map(|n| stored.get(n).copied().ok_or(MissingNode(*n)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let frontier = Frontier::from_hashes(size, hashes)
        .ok_or_else(|| SealStoreError::Corrupt("the tree's right edge".into()))?;
    let last_head = latest_head(&mut *conn).await?.map(|h| h.head);
    Ok(SealedTree {
        frontier,
        last,
        last_head,
    })
}

/// Appends `events` (in log order) as leaves, with the subtrees they
/// complete, inside the caller's transaction; events at or before the last
/// one sealed are skipped (idempotent by log position). Returns how many
/// leaves were added. `tree` moves only in memory: the caller drops it if
/// the transaction does not commit.
pub async fn seal_events(
    conn: &mut PgConnection,
    tree: &mut SealedTree,
    events: &[RecordedEvent],
) -> Result<usize> {
    let mut leaves = LeafRows::default();
    let (mut levels, mut indexes, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        if e.position <= tree.last {
            continue;
        }
        let leaf = event_leaf(&e.hash);
        leaves.index.push(tree.frontier.size() as i64);
        leaves.commit.push(e.position.commit as i64);
        leaves.position.push(e.position.event as i64);
        leaves.hash.push(leaf.to_vec());
        tree.frontier.push(leaf, |node, hash| {
            levels.push(node.level as i16);
            indexes.push(node.index as i64);
            hashes.push(hash.to_vec());
        });
        tree.last = e.position;
    }
    if leaves.index.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO seal_leaves (leaf_index, commit_id, global_position, hash) \
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::bytea[])",
    )
    .bind(&leaves.index)
    .bind(&leaves.commit)
    .bind(&leaves.position)
    .bind(&leaves.hash)
    .execute(&mut *conn)
    .await?;
    if !levels.is_empty() {
        sqlx::query(
            "INSERT INTO seal_nodes (level, idx, hash) \
             SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[])",
        )
        .bind(&levels)
        .bind(&indexes)
        .bind(&hashes)
        .execute(&mut *conn)
        .await?;
    }
    Ok(leaves.index.len())
}

#[derive(Default)]
struct LeafRows {
    index: Vec<i64>,
    commit: Vec<i64>,
    position: Vec<i64>,
    hash: Vec<Vec<u8>>,
}

/// Records a signed head.
pub async fn record_head(conn: &mut PgConnection, head: &SignedTreeHead) -> Result<()> {
    let h = &head.head;
    sqlx::query(
        "INSERT INTO seal_heads (tree_size, root_hash, last_commit, last_position, sealed_at, signature) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(h.tree_size as i64)
    .bind(h.root_hash.0.as_slice())
    .bind(h.last_position.commit as i64)
    .bind(h.last_position.event as i64)
    .bind(h.sealed_at)
    .bind(head.signature.0.as_slice())
    .execute(conn)
    .await?;
    Ok(())
}

/// The seals' standing, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SealStatus {
    pub tree_size: u64,
    pub last_sealed: Option<LogPosition>,
    pub latest_head: Option<SignedTreeHead>,
}

pub async fn status(pool: &PgPool) -> Result<SealStatus> {
    let mut conn = pool.acquire().await?;
    let last: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT leaf_index, commit_id, global_position FROM seal_leaves \
         ORDER BY leaf_index DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(SealStatus {
        tree_size: last.map_or(0, |(i, _, _)| i as u64 + 1),
        last_sealed: last.map(|(_, c, p)| LogPosition {
            commit: c as u64,
            event: p as u64,
        }),
        latest_head: latest_head(&mut *conn).await?,
    })
}

/// What checking the heads went over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadsSummary {
    pub heads: u64,
    pub leaves: u64,
    pub findings: u64,
}

/// Events read at a time by [`verify_heads`].
const VERIFY_PAGE: i64 = 10_000;

/// Recomputes the tree from the stored events, in log order, and checks
/// every recorded head's root at its size (and its signature, when `key` is
/// given); a head that no longer matches is named, with the first leaf where
/// the log now differs from what was sealed. Reads only as far as the
/// largest head.
pub async fn verify_heads(
    pool: &PgPool,
    key: Option<&VerifyingKey>,
    mut on_finding: impl FnMut(&HeadFinding),
) -> Result<HeadsSummary> {
    let heads = heads(pool, None).await?;
    let mut summary = HeadsSummary {
        heads: heads.len() as u64,
        ..HeadsSummary::default()
    };
    let mut report = |f: HeadFinding, summary: &mut HeadsSummary| {
        summary.findings += 1;
        on_finding(&f);
    };
    if let Some(key) = key {
        for h in &heads {
            if let Err(e) = h.verify(key) {
                report(HeadFinding::Signature(e), &mut summary);
            }
        }
    }
    let Some(largest) = heads.last().map(|h| h.head.tree_size) else {
        return Ok(summary);
    };
    let mut frontier = Frontier::default();
    let mut first: Option<LeafDifference> = None;
    let mut next_head = heads.iter().map(|h| &h.head).peekable();
    let mut after = (String::from("0"), 0i64);
    while frontier.size() < largest {
        let want = VERIFY_PAGE.min((largest - frontier.size()) as i64);
        let rows: Vec<(Uuid, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT event_id, transaction_id::text::bigint, global_position, hash FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
             ORDER BY transaction_id, global_position LIMIT $3",
        )
        .bind(&after.0)
        .bind(after.1)
        .bind(want)
        .fetch_all(pool)
        .await?;
        let start = frontier.size() as i64;
        let sealed: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT leaf_index, commit_id, global_position, hash FROM seal_leaves \
             WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
        )
        .bind(start)
        .bind(start + want)
        .fetch_all(pool)
        .await?;
        let sealed: HashMap<u64, (LogPosition, Hash)> = sealed
            .into_iter()
            .filter_map(|(i, c, p, h)| {
                let h = hash32(&h).ok()?;
                Some((i as u64, (position(c, p), h)))
            })
            .collect();
        for (event_id, commit, pos, hash) in &rows {
            let leaf = event_leaf(hash);
            let index = frontier.size();
            let here = sealed.get(&index).copied();
            if first.is_none() && here.map(|(_, h)| h) != Some(leaf) {
                first = Some(LeafDifference {
                    index,
                    sealed: here,
                    now: Some((*event_id, position(*commit, *pos), leaf)),
                });
            }
            frontier.push(leaf, |_, _| {});
            summary.leaves += 1;
            while let Some(h) = next_head.next_if(|h| h.tree_size == frontier.size()) {
                let now = frontier.root();
                if now != h.root_hash.0 {
                    report(
                        HeadFinding::RootDiffers {
                            head: h.clone(),
                            now,
                            first: first.clone(),
                        },
                        &mut summary,
                    );
                }
            }
        }
        match rows.last() {
            Some((_, commit, pos, _)) => after = (commit.to_string(), *pos),
            None => break,
        }
        if (rows.len() as i64) < want {
            break;
        }
    }
    // A head of size 0 names the empty tree.
    while let Some(h) = next_head.next_if(|h| h.tree_size == 0) {
        if h.root_hash.0 != merkle::empty_root() {
            report(
                HeadFinding::RootDiffers {
                    head: h.clone(),
                    now: merkle::empty_root(),
                    first: None,
                },
                &mut summary,
            );
        }
    }
    let log_size = frontier.size();
    for h in next_head {
        let first = match &first {
            Some(d) => Some(d.clone()),
            None => {
                let sealed: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT commit_id, global_position, hash FROM seal_leaves WHERE leaf_index = $1",
                )
                .bind(log_size as i64)
                .fetch_optional(pool)
                .await?;
                Some(LeafDifference {
                    index: log_size,
                    sealed: sealed.and_then(|(c, p, h)| Some((position(c, p), hash32(&h).ok()?))),
                    now: None,
                })
            }
        };
        report(
            HeadFinding::BeyondLog {
                head: h.clone(),
                log_size,
                first,
            },
            &mut summary,
        );
    }
    Ok(summary)
}

fn position(commit: i64, event: i64) -> LogPosition {
    LogPosition {
        commit: commit as u64,
        event: event as u64,
    }
}
