from terrarium_worker import main

main()
