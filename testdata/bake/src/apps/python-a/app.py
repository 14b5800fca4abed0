print("python-a")
