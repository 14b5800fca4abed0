print("python-b")
