from muscale.cli.main import entry

entry()
