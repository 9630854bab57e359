from touchstone.cli.main import app

app()
