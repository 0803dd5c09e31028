-- The instruments ("BASE/QUOTE", as a JSON list) each client may trade. Clients that existed
-- before get none: a trade-scoped client trades nothing until an operator names its instruments
-- (`keygate client add … --instrument BTC/USDT`, or `keygate client instruments`).
ALTER TABLE clients ADD COLUMN instruments TEXT NOT NULL DEFAULT '[]';
