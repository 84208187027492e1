from forgegit.cli import main

main()
