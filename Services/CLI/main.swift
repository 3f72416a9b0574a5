print("rapport CLI: under construction")
