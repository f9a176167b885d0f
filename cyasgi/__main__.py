from cyasgi.main import main

main()
