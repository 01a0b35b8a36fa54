from shared.schemas import export

for path in export():
    print(path.name)
