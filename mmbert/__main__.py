from mmbert.cli import program

program()
