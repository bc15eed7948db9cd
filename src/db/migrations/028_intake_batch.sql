-- Intake's common case for a group of IPNs in one transaction (src/pipeline/payment/intake-batch.ts): the IPNs that
-- reach the web process while its previous group is in the database, applied one after the other by
-- payrail_intake_ipn (026), each exactly as a call of its own would, and committed together. On 2 cores a payment's
-- own call spent about as much of the database's time on being a transaction (its start, its snapshot, the commit
-- and the wait for its WAL flush) as on its rows; a group pays that once.
--
-- Locks. Items of one group touch many channels and balance rows, one after the other, so two groups (or a group and
-- a single call) could take the same rows in opposite orders. Before its first item the group takes, in this order,
-- every channel credit lock it may need (shared, by key) and every existing balance row its items may post to (by
-- id), which is the order a single call takes them in (026, then 003): after that every lock an item takes is one the
-- group already holds, except the rows it creates (a payment, a channel's first account). A deadlock left (the same
-- new payment inserted at once by this group and by a call holding one of these rows) is broken by PostgreSQL; Node
-- then applies the group's IPNs one by one, with their own calls.
--
-- Arrays, one element per IPN, in the order Node received them; p_advances_from is each IPN's list of statuses it
-- moves a payment forward from, joined by commas (a status has none); p_accounts and p_allow_negative hold each IPN's
-- three accounts as one row of an n × 3 array. The settings are the group's (one process's configuration). A row is
-- returned per IPN, with its position (o_index, from 1), as payrail_intake_ipn returns it.
create function payrail_intake_ipns(
  p_payment_ids text[], p_invoice_ids numeric[], p_parent_payment_ids numeric[], p_order_ids text[],
  p_user_ids text[], p_channel_ids text[], p_statuses text[], p_pay_currencies text[], p_pay_amounts numeric[],
  p_actually_paid numeric[], p_price_amounts numeric[], p_price_currencies text[], p_outcome_amounts numeric[],
  p_outcome_currencies text[], p_assets text[], p_grosses numeric[], p_last_ipns text[], p_advances_from text[],
  p_accounts text[], p_allow_negative boolean[],
  p_default_fee_percent numeric, p_confirm_deadline_secs double precision, p_payout_task text,
  p_payout_key_mode text, p_payout_max_attempts integer, p_confirm_task text, p_confirm_key_mode text,
  p_confirm_max_attempts integer)
returns table (o_index integer, o_outcome text, o_status text, o_credited text, o_confirming boolean,
  o_declined text)
language plpgsql as $$
declare
  v_n integer := coalesce(cardinality(p_payment_ids), 0);
  v_key bigint;
begin
  if v_n = 0 or array_ndims(p_accounts) <> 2 or array_length(p_accounts, 1) <> v_n
     or array_length(p_accounts, 2) <> 3 or array_ndims(p_allow_negative) <> 2
     or array_length(p_allow_negative, 1) <> v_n or array_length(p_allow_negative, 2) <> 3
     or v_n <> all (array[cardinality(p_invoice_ids), cardinality(p_parent_payment_ids), cardinality(p_order_ids),
       cardinality(p_user_ids), cardinality(p_channel_ids), cardinality(p_statuses), cardinality(p_pay_currencies),
       cardinality(p_pay_amounts), cardinality(p_actually_paid), cardinality(p_price_amounts),
       cardinality(p_price_currencies), cardinality(p_outcome_amounts), cardinality(p_outcome_currencies),
       cardinality(p_assets), cardinality(p_grosses), cardinality(p_last_ipns), cardinality(p_advances_from)]) then
    raise exception 'an intake group of % IPNs is malformed', v_n;
  end if;

  for v_key in
    select distinct payrail_channel_lock_key(c) from unnest(p_channel_ids) as c order by 1
  loop
    perform pg_advisory_xact_lock_shared(v_key);
  end loop;
  perform 1 from ledger_accounts a
    where (a.code, a.asset) in (
      select p_accounts[i][k], p_assets[i] from generate_subscripts(p_payment_ids, 1) as i, generate_series(1, 3) as k)
    order by a.id for update;

  for i in 1 .. v_n loop
    select i, f.o_outcome, f.o_status, f.o_credited, f.o_confirming, f.o_declined
      into o_index, o_outcome, o_status, o_credited, o_confirming, o_declined
      from payrail_intake_ipn(p_payment_ids[i], p_invoice_ids[i], p_parent_payment_ids[i], p_order_ids[i],
        p_user_ids[i], p_channel_ids[i], p_statuses[i], p_pay_currencies[i], p_pay_amounts[i], p_actually_paid[i],
        p_price_amounts[i], p_price_currencies[i], p_outcome_amounts[i], p_outcome_currencies[i], p_assets[i],
        p_grosses[i], p_last_ipns[i], string_to_array(p_advances_from[i], ','),
        array[p_accounts[i][1], p_accounts[i][2], p_accounts[i][3]],
        array[p_allow_negative[i][1], p_allow_negative[i][2], p_allow_negative[i][3]],
        p_default_fee_percent, p_confirm_deadline_secs, p_payout_task, p_payout_key_mode, p_payout_max_attempts,
        p_confirm_task, p_confirm_key_mode, p_confirm_max_attempts) as f;
    return next;
  end loop;
end $$;
