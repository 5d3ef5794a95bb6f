"""The security policy database: setkey.conf parsing (parse), the SPD (db), its dumps (dump)."""
