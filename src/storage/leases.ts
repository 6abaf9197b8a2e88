/**
 * Lease tokens and heartbeats (migration 0004_leases; docs/job-life.md, "Fenced leases" and
 * "Leases held while someone holds the job"): what every layer (memory, SQLite, MySQL) and role
 * (QueueRunner, Injector, Controller, worker helper) must agree on, defined once.
 */
import { Effect } from "effect"
import { randomBytes } from "node:crypto"

/** A lease token: 16 random bytes as 32 lowercase hex characters (the `lease_token` column). */
export type LeaseToken = string

/** A new token from the cryptographic source (node:crypto): unguessable, so a completion can't be forged. */
export const newLeaseToken: Effect.Effect<LeaseToken> = Effect.sync(() => randomBytes(16).toString("hex"))

/** A token as it may come in a worker JSON: only this shape is compared with the column. */
export const LEASE_TOKEN_PATTERN = /^[0-9a-f]{32}$/

/**
 * "Held by a heartbeat", in SQL: a worker (helper or Controller) running the job wrote a
 * heartbeat within the last lease. One `?`: `heartbeatCutoff(now, leaseSeconds)`. A row so held
 * is left alone by whoever frees jobs nobody holds (a dispatcher whose job server connection
 * broke): its worker still runs it.
 */
export const HELD_BY_HEARTBEAT = "COALESCE(heartbeat_at, 0) >= ?"

/** The parameter of `HELD_BY_HEARTBEAT`: heartbeats older than one lease no longer hold a job. */
export const heartbeatCutoff = (now: number, leaseSeconds: number): number => now - leaseSeconds

/** `HELD_BY_HEARTBEAT` for a row of the memory layer (the same rule, checked against it by the contract suite). */
export const heldByHeartbeat = (heartbeatAt: number | null, now: number, leaseSeconds: number): boolean =>
  (heartbeatAt ?? 0) >= heartbeatCutoff(now, leaseSeconds)
