// When a number change merges the new number's early conversation into the old one, its routing
// goes along: the conversation_routes row would otherwise cascade away with the deleted
// conversation, and its forwarding events would stay queued under an id that no longer exists.
import type { PoolClient } from '../../store/pool.js';

/** Called before `from` is deleted, in the merge's transaction (both conversations locked). */
export async function mergeConversationRouting(client: PoolClient, from: string | number, into: string | number): Promise<void> {
  await client.query('UPDATE forward_events SET conversation_id = $2 WHERE conversation_id = $1', [from, into]);
  // An assignment wins over a menu or closed state: the area already has the customer.
  await client.query(
    `DELETE FROM conversation_routes k USING conversation_routes g
     WHERE k.conversation_id = $2 AND g.conversation_id = $1 AND g.state = 'assigned' AND k.state <> 'assigned'`,
    [from, into],
  );
  await client.query(
    `UPDATE conversation_routes SET conversation_id = $2, updated_at = now()
     WHERE conversation_id = $1 AND NOT EXISTS (SELECT 1 FROM conversation_routes WHERE conversation_id = $2)`,
    [from, into],
  );
}
