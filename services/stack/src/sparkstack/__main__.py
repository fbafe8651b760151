from sparkstack.cli import main

main()
