/**
 * Replica-owned ids. Several replicas can serve one API behind a load balancer, but a video
 * session, an image's cached features (image_id) and an uploaded video (video_id) live in one
 * replica. With REPLICA_ID set, every such id this replica makes starts with its name and a dot
 * ("sam3-1.6f0c...") so a proxy can send any request naming the id to its owner (deploy/nginx
 * routes ids in the path and the query string that way; ids in JSON bodies by following the 421
 * below once). Without REPLICA_ID the ids are the bare local ids, as on a single server.
 *
 * A replica given another replica's id answers 421 Misdirected Request, `wrong_replica`, with the
 * owner in `details.owner` and in the X-Sam3-Owner header: it never looks the id up, so it can
 * never hand out another replica's data (a content-hash image_id could otherwise match its own
 * cache). An id of this replica that is unknown gets the usual 404 (closed, expired, or lost when
 * the replica restarted). A request for an id whose replica is gone never reaches a replica: the
 * proxy answers it (deploy/nginx: 410 `replica_gone`).
 */
import { ApiCode, ApiError } from './errors.js';

/** A replica name: a DNS label (a StatefulSet pod name such as sam3-0 is one). */
export const REPLICA_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** The owner prefix of an id: a replica name and a dot. */
const OWNED = /^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.(.+)$/;

/** Response header naming the replica that answered (every response) and the owner (421). */
export const REPLICA_HEADER = 'X-Sam3-Replica';
export const OWNER_HEADER = 'X-Sam3-Owner';

export class ReplicaIds {
  /** `name`: this replica's REPLICA_ID, or undefined for a server that runs alone. */
  constructor(readonly name: string | undefined) {}

  /** The id clients see for a local id this replica made. */
  mint(local: string): string {
    return this.name ? `${this.name}.${local}` : local;
  }

  /** The replica an id names, if it names one. */
  static owner(id: string): string | undefined {
    return OWNED.exec(id)?.[1];
  }

  /**
   * The local part of an id this replica owns (an id without an owner prefix is taken as local).
   * Throws 421 wrong_replica for another replica's id. `field` names where the id came from.
   */
  local(id: string, field: string): string {
    const m = OWNED.exec(id);
    if (!m) return id;
    this.check(id, m[1]!, field);
    return m[2]!;
  }

  /** Checks that a full id (as the client sent it) is this replica's; returns it unchanged. */
  own(id: string, field: string): string {
    const owner = ReplicaIds.owner(id);
    if (owner !== undefined) this.check(id, owner, field);
    return id;
  }

  private check(id: string, owner: string, field: string): void {
    if (owner === this.name) return;
    const here = this.name ? `this is replica '${this.name}'` : 'this server runs without REPLICA_ID';
    throw new ApiError(
      421,
      ApiCode.WrongReplica,
      `${field} '${shown(id)}' belongs to replica '${owner}' and ${here}; send the request to '${owner}' (a load balancer configured as deploy/nginx does routes it there by the prefix before the dot)`,
      { field, owner, replica: this.name ?? null },
      { [OWNER_HEADER]: owner },
    );
  }
}

function shown(id: string): string {
  return id.length > 120 ? `${id.slice(0, 120)}...` : id;
}
