from galaug.cli import main

main()
