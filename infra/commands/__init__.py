"""One module per `kiln` command (plan, schema and examples live in infra/commands/cli.py, which
assembles them all); `errors` is how every command reports a user error."""
