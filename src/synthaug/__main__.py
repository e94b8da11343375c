from synthaug.cli import app

app()
