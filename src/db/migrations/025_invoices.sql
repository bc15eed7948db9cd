-- Checkout: the NOWPayments invoices payrail created for the platform (POST /api/invoices), one row per invoice
-- NOWPayments created as asked. A refused or mismatched answer stores nothing: only an invoice whose price, currency
-- and order id NOWPayments confirmed is handed out, so every row is a payment page that pays into its channel.
create table invoices (
  -- NOWPayments' invoice id; the payments made on it carry it as invoice_id in their IPNs.
  invoice_id text primary key check (invoice_id ~ '^[1-9][0-9]{0,19}$'),
  channel_id text not null references channels (channel_id),
  user_id text not null check (user_id ~ '^[1-9][0-9]{0,19}$'),
  -- US dollars to the cent, exactly as asked.
  price_usd numeric(12, 2) not null check (price_usd > 0 and price_usd <= 100000),
  -- What intake reads the channel and user from in every IPN of a payment on this invoice.
  order_id text not null check (order_id = 'PGP-' || user_id || '|' || channel_id),
  description text,
  invoice_url text not null,
  success_url text,
  ipn_callback_url text not null,
  -- The admin token's name that asked for it.
  created_by text not null,
  created_at timestamptz not null default now()
);
create index invoices_channel_created on invoices (channel_id, created_at);
