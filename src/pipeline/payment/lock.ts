import type { Selectable, Transaction } from 'kysely';
import type { Database, PaymentsTable } from '../../db/index.ts';

/**
 * The payment's row, locked until the caller's commit: a person's decision, its payout's opening and every copy of its
 * IPN take it, so one waits for the other and then reads what it did. Undefined when there is no such payment.
 */
export function lockPayment(
  trx: Transaction<Database>,
  paymentId: string,
): Promise<Selectable<PaymentsTable> | undefined> {
  return paymentForUpdate(trx, paymentId).executeTakeFirst();
}

/** The same row lock as a query: intake and the confirm job know the payment exists, so a missing one throws there. */
export function paymentForUpdate(trx: Transaction<Database>, paymentId: string) {
  return trx.selectFrom('payments').selectAll().where('payment_id', '=', paymentId).forUpdate();
}
